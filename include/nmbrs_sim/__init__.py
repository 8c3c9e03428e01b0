"""A local simulator of Nmbrs' SOAP API v3 (DebtorService, CompanyService), REST API and OAuth2 identity server
for demos, tests and benchmarks."""

__version__ = "0.1.0"
