-- Issue #9: a paid order is never failed for running out of reassignment attempts alone. After
-- the last attempt it goes back to the pool (`repooled` counts how often); it fails only once
-- its delivery deadline `deliver_by` has passed while it still waits for a rider.
ALTER TABLE dispatch_orders ADD COLUMN IF NOT EXISTS deliver_by TIMESTAMPTZ;
ALTER TABLE dispatch_orders ADD COLUMN IF NOT EXISTS repooled INT NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS dispatch_orders_deadline ON dispatch_orders (deliver_by, id)
    WHERE status = 'PENDING' AND deliver_by IS NOT NULL;
