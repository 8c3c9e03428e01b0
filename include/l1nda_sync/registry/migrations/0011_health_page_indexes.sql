-- 0011: indexes for the operators' token-health page (issue 21, the Airflow plugin), measured on 50,000
-- credentials with `python -m l1nda_dev.bench.ui_pages`: the links list names each link's debtor (reach_debtors
-- by debtor_id, a seq scan of every reached debtor per row without it) and its company (reach_companies by
-- company_id, lost ones too: a suspended link shows the name last seen), and the credentials and links lists
-- filter by customer reference (links.customer_ref).
CREATE INDEX IF NOT EXISTS reach_debtors_debtor ON reach_debtors (debtor_id);
CREATE INDEX IF NOT EXISTS links_customer ON links (customer_ref);
CREATE INDEX IF NOT EXISTS reach_companies_company ON reach_companies (company_id);
