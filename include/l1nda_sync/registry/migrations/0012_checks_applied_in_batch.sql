-- 0012: a check its sync batch applied in the transaction that stored it (issue 22, `engine.early_apply`): a valid
-- answer equal to the stored reach, from an active token with nothing pending or suspected, moves only the token's
-- clock. The run's apply step counts these in its report; every other check is applied by that step, as before.
ALTER TABLE checks ADD COLUMN IF NOT EXISTS applied_in_batch boolean NOT NULL DEFAULT false;
