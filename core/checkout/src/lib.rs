//! Checkout domain (04-checkout), first part (issue #13): the request with its field rules
//! ([`request`]), the saga as the application layer ([`saga`]: price from the catalog → reserve
//! through the inventory core → create the order → apply promos → charge → confirm the hold
//! and write the order, its `dispatch_queue` row and outbox events together; compensations in
//! reverse) over its ports ([`ports`]) with memory adapters and 04's gateway simulator. The
//! Postgres repository, the outbox relay, webhooks, idempotency leases and the service come next.

pub mod ports;
pub mod request;
pub mod saga;

pub use ports::{
    Catalog, MemoryOrders, NoPromos, OrderRecord, OrderRepo, OrderStatus, PaymentGateway,
    PriceList, PromoAnswer, PromoCall, Promos, SimulatedGateway,
};
pub use request::{CheckoutRequest, RequestError};
pub use saga::{Checkout, Failure, SagaError, Step};
