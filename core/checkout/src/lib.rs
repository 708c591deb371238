//! Checkout domain (04-checkout), first part (issue #13): the request with its field rules
//! ([`request`]), the saga as the application layer ([`saga`]: price from the catalog → reserve
//! through the inventory core → create the order → apply promos → charge → confirm the hold
//! and write the order, its `dispatch_queue` row and outbox events together; compensations in
//! reverse) over its ports ([`ports`]) with memory adapters and 04's gateway simulator, and the
//! Postgres order repository ([`pg`]; one conformance suite), and the outbox relay
//! ([`outbox`]), and payment webhooks ([`webhook`]: signature with a signed timestamp, one
//! transaction per event), and idempotency ([`idempotency`]: stored outcomes and a lease per
//! user and key). Saga recovery, the service and the twin come next.

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod flow;
/// Idempotency keys live in `qc_kit` (Flash sale uses them too).
pub use qc_kit::idempotency;
pub mod outbox;
pub mod pg;
pub mod ports;
pub mod request;
pub mod saga;
pub mod webhook;

pub use pg::PgOrders;
pub use ports::{
    Catalog, MemoryOrders, NoPromos, OrderRecord, OrderRepo, OrderStatus, PaymentGateway,
    PriceList, PromoAnswer, PromoCall, Promos, SimulatedGateway,
};
pub use request::{CheckoutRequest, RequestError};
pub use saga::{Checkout, Failure, SagaError, Step};
