//! The Lua script registry: every script in `lua/`, compiled in with `include_str!`, invoked by
//! EVALSHA with a transparent reload after a Redis restart (NOSCRIPT).

use std::sync::LazyLock;

use redis::Script;

macro_rules! lua {
    ($name:ident, $file:literal) => {
        pub static $name: LazyLock<Script> =
            LazyLock::new(|| Script::new(include_str!(concat!("../../../lua/", $file))));
    };
}

lua!(INVENTORY_RESERVE, "inventory_reserve.lua");
lua!(INVENTORY_TRANSITION, "inventory_transition.lua");
lua!(INVENTORY_SET_STOCK, "inventory_set_stock.lua");
lua!(LEASE_ACQUIRE, "lease_acquire.lua");
lua!(GEO_CACHE_WRITE, "geo_cache_write.lua");
lua!(LEASE_RELEASE, "lease_release.lua");
lua!(ETA_KF_UPDATE, "eta_kf_update.lua");
lua!(ETA_STICKY_PUT, "eta_sticky_put.lua");
lua!(ETA_ACI_ADAPT, "eta_aci_adapt.lua");
lua!(TRACKING_STATUS, "tracking_status.lua");
lua!(TRACKING_POSITION, "tracking_position.lua");
lua!(PROMO_RESERVE, "promo_reserve.lua");
lua!(PROMO_RELEASE, "promo_release.lua");
lua!(CHECKOUT_IDEM_BEGIN, "checkout_idem_begin.lua");
lua!(CHECKOUT_IDEM_FINISH, "checkout_idem_finish.lua");
lua!(FLASH_INIT, "flash_init.lua");
lua!(FLASH_HIT, "flash_hit.lua");
lua!(FLASH_OBSERVE, "flash_observe.lua");
lua!(FLASH_SLOT, "flash_slot.lua");
lua!(FLASH_RESERVE, "flash_reserve.lua");
lua!(FLASH_QUEUE, "flash_queue.lua");
lua!(FLASH_ADMIT, "flash_admit.lua");
lua!(FLASH_CONFIRM, "flash_confirm.lua");
lua!(FLASH_RELEASE, "flash_release.lua");

/// Every script, with its file name, for preloading and diagnostics.
pub fn all() -> Vec<(&'static str, &'static Script)> {
    vec![
        ("inventory_reserve", &*INVENTORY_RESERVE),
        ("inventory_transition", &*INVENTORY_TRANSITION),
        ("inventory_set_stock", &*INVENTORY_SET_STOCK),
        ("lease_acquire", &*LEASE_ACQUIRE),
        ("geo_cache_write", &*GEO_CACHE_WRITE),
        ("lease_release", &*LEASE_RELEASE),
        ("eta_kf_update", &*ETA_KF_UPDATE),
        ("eta_sticky_put", &*ETA_STICKY_PUT),
        ("eta_aci_adapt", &*ETA_ACI_ADAPT),
        ("tracking_status", &*TRACKING_STATUS),
        ("tracking_position", &*TRACKING_POSITION),
        ("promo_reserve", &*PROMO_RESERVE),
        ("promo_release", &*PROMO_RELEASE),
        ("checkout_idem_begin", &*CHECKOUT_IDEM_BEGIN),
        ("checkout_idem_finish", &*CHECKOUT_IDEM_FINISH),
        ("flash_init", &*FLASH_INIT),
        ("flash_hit", &*FLASH_HIT),
        ("flash_observe", &*FLASH_OBSERVE),
        ("flash_slot", &*FLASH_SLOT),
        ("flash_reserve", &*FLASH_RESERVE),
        ("flash_queue", &*FLASH_QUEUE),
        ("flash_admit", &*FLASH_ADMIT),
        ("flash_confirm", &*FLASH_CONFIRM),
        ("flash_release", &*FLASH_RELEASE),
    ]
}

/// Loads every script (SCRIPT LOAD) so the first EVALSHA of each is not a miss.
pub async fn preload(conn: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<()> {
    for (_, s) in all() {
        s.prepare_invoke().load_async(conn).await?;
    }
    Ok(())
}

/// `EVALSHA <sha> <numkeys> <keys..> <args..>` as a plain command, so a script can share a
/// pipeline (one round trip) with other commands. Pair with [`is_noscript`] and [`preload`].
pub fn evalsha(script: &Script, keys: &[String], args: &[String]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash())
        .arg(keys.len())
        .arg(keys)
        .arg(args);
    cmd
}

/// Whether Redis lost its script cache (restart, SCRIPT FLUSH): load and retry.
pub fn is_noscript(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_script_states_its_argv_contract() {
        for (name, s) in super::all() {
            assert_eq!(s.get_hash().len(), 40, "{name}");
        }
    }
}
