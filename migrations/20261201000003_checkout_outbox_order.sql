-- Events of one confirming transaction share created_at; `seq` keeps the order they were
-- written in (order.confirmed before payment.charged), so the relay publishes them in it.
ALTER TABLE checkout_outbox ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
