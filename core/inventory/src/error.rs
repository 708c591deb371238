//! Inventory errors in domain words; `services/` maps each to a status and code in one place.

use qc_kit::redis_kit::BackendError;

use crate::model::{ReservationStatus, Sku};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("{0}")]
    Invalid(String),
    #[error("insufficient stock for {sku}: available {available}, requested {requested}")]
    InsufficientStock {
        sku: Sku,
        available: i64,
        requested: u32,
    },
    #[error("no stock record for sku {sku} at this hub")]
    SkuNotFound { sku: Sku },
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("reservation is {status}")]
    InvalidState { status: ReservationStatus },
    #[error("reservation expired")]
    ReservationExpired,
    #[error("Idempotency-Key was already used for a different request")]
    IdempotencyConflict,
    #[error("stock layout kept changing; try again")]
    Contended,
    #[error("{0}")]
    Backend(#[from] BackendError),
}
