//! The HTTP services (axum) over the core crates, and the platform plumbing they share.
//! Only this crate knows HTTP; the `qc` binary (main.rs) starts one service or all of them.

pub mod catalog;
pub mod checkout;
pub mod dispatch;
pub mod eta;
pub mod flashsale;
pub mod geo;
pub mod inventory;
pub mod platform;
pub mod promo;
pub mod search;
pub mod tracking;

use std::sync::Arc;

use platform::config::{PlatformConfig, ServiceId};
use platform::server::BuiltService;
use platform::shutdown::Shutdown;
use qc_kit::config::EnvSource;
use qc_kit::WallClock;

/// Builds one service from the environment with the wall clock and its background loops.
pub async fn build_service(
    id: ServiceId,
    cfg: &PlatformConfig,
    env: &EnvSource,
    shutdown: Shutdown,
) -> Result<BuiltService, String> {
    match id {
        ServiceId::Inventory => {
            let inv = inventory::InventoryConfig::from_env(env).map_err(|e| e.to_string())?;
            let (_, svc) = inventory::build(cfg, inv, Arc::new(WallClock), shutdown, true).await?;
            Ok(svc)
        }
        ServiceId::Geo => {
            let geo = geo::GeoConfig::from_env(env)?;
            let (_, svc) = geo::build(cfg, geo, Arc::new(WallClock), shutdown, true).await?;
            Ok(svc)
        }
        ServiceId::Dispatch => {
            let d = dispatch::DispatchConfig::from_env(env).map_err(|e| e.to_string())?;
            let (_, svc) = dispatch::build(cfg, d, Arc::new(WallClock), shutdown, true).await?;
            Ok(svc)
        }
        ServiceId::Eta => {
            let e = eta::EtaConfig::from_env(env).map_err(|e| e.to_string())?;
            let (_, svc) = eta::build(cfg, e, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
        ServiceId::Tracking => {
            let t = tracking::TrackingConfig::from_env(env).map_err(|e| e.to_string())?;
            let (_, svc) = tracking::build(cfg, t, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
        ServiceId::Checkout => {
            let c =
                checkout::CheckoutSettings::from_env(env, &cfg.env).map_err(|e| e.to_string())?;
            let (_, svc) = checkout::build(cfg, c, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
        ServiceId::Catalog => {
            let (_, svc) = catalog::build(cfg, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
        ServiceId::Search => {
            let s = search::SearchSettings::from_env(env).map_err(|e| e.to_string())?;
            let (_, svc) = search::build(cfg, s, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
        ServiceId::FlashSale => {
            let f = flashsale::FlashSettings::from_env(env, &cfg.env).map_err(|e| e.to_string())?;
            let (_, svc) = flashsale::build(cfg, f, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
        ServiceId::Promo => {
            let p = promo::PromoSettings::from_env(env, &cfg.env).map_err(|e| e.to_string())?;
            let (_, svc) = promo::build(cfg, p, Arc::new(WallClock), shutdown).await?;
            Ok(svc)
        }
    }
}
