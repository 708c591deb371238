//! Platform configuration (00-platform "Configuration"), validated at start.

use qc_kit::config::{ConfigError, EnvReader, EnvSource, StoreConfig};

/// The ten services and their fixed ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceId {
    Inventory,
    Geo,
    Dispatch,
    Eta,
    Tracking,
    Promo,
    Checkout,
    Catalog,
    Search,
    FlashSale,
}

impl ServiceId {
    /// Every service that exists so far (`serve all` starts these).
    pub const ALL: &'static [ServiceId] = &[
        ServiceId::Inventory,
        ServiceId::Geo,
        ServiceId::Dispatch,
        ServiceId::Eta,
        ServiceId::Tracking,
        ServiceId::Promo,
        ServiceId::Checkout,
        ServiceId::Catalog,
        ServiceId::Search,
        ServiceId::FlashSale,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceId::Inventory => "inventory",
            ServiceId::Geo => "geo",
            ServiceId::Dispatch => "dispatch",
            ServiceId::Eta => "eta",
            ServiceId::Tracking => "tracking",
            ServiceId::Promo => "promo",
            ServiceId::Checkout => "checkout",
            ServiceId::Catalog => "catalog",
            ServiceId::Search => "search",
            ServiceId::FlashSale => "flash-sale",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            ServiceId::Inventory => 8091,
            ServiceId::Geo => 8092,
            ServiceId::Dispatch => 8096,
            ServiceId::Eta => 8097,
            ServiceId::Tracking => 8099,
            ServiceId::Promo => 8095,
            ServiceId::Checkout => 8094,
            ServiceId::Catalog => 8100,
            ServiceId::Search => 8098,
            ServiceId::FlashSale => 8093,
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|id| id.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    pub env: String,
    pub bind_addr: String,
    /// Overrides the service's fixed port (tests, extra instances; one service only).
    pub port: Option<u16>,
    /// `PORT_OFFSET`: added to every fixed port (a second platform beside the first, e.g. a
    /// test's `serve all`; point the `*_URL` settings at the shifted ports).
    pub port_offset: u16,
    pub log_level: String,
    pub log_format: String,
    pub shutdown_timeout_secs: u64,
    pub instance_id: String,
    pub internal_api_token: Option<String>,
    pub store: StoreConfig,
}

impl PlatformConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Self {
        let port = r.number("PORT", 0u16, 0, 65535);
        Self {
            env: r.choice("ENV", "development", &["development", "test", "production"]),
            bind_addr: r.checked("BIND_ADDR", "0.0.0.0", |v| {
                v.parse::<std::net::IpAddr>()
                    .map(|_| ())
                    .map_err(|_| "must be an IP address".into())
            }),
            port: (port != 0).then_some(port),
            port_offset: r.number("PORT_OFFSET", 0u16, 0, 50_000),
            log_level: r.choice("LOG_LEVEL", "info", &["error", "warn", "info", "debug"]),
            log_format: r.choice("LOG_FORMAT", "json", &["json", "text"]),
            shutdown_timeout_secs: r.number("SHUTDOWN_TIMEOUT_SECS", 10, 1, 600),
            instance_id: r.checked("INSTANCE_ID", &default_instance(), |v| {
                qc_kit::validate_id("INSTANCE_ID", v).map_err(|e| e.to_string())
            }),
            internal_api_token: Some(r.string("INTERNAL_API_TOKEN", "")).filter(|t| !t.is_empty()),
            store: StoreConfig::read(r),
        }
    }

    pub fn from_env(env: &EnvSource) -> Result<Self, ConfigError> {
        let mut r = env.reader();
        let cfg = Self::read(&mut r);
        r.finish()?;
        Ok(cfg)
    }

    pub fn port_for(&self, id: ServiceId) -> u16 {
        self.port.unwrap_or(id.default_port() + self.port_offset)
    }
}

fn default_instance() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| qc_kit::validate_id("INSTANCE_ID", h).is_ok());
    host.unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_named() {
        let env =
            EnvSource::from_pairs([("PORT", "99999"), ("ENV", "prod"), ("LOG_FORMAT", "xml")]);
        let e = PlatformConfig::from_env(&env).unwrap_err().to_string();
        for name in ["PORT", "ENV", "LOG_FORMAT"] {
            assert!(e.contains(name), "{e}");
        }
    }

    #[test]
    fn port_defaults_to_the_fixed_one() {
        let cfg = PlatformConfig::from_env(&EnvSource::from_pairs([])).unwrap();
        assert_eq!(cfg.port_for(ServiceId::Inventory), 8091);
        let cfg = PlatformConfig::from_env(&EnvSource::from_pairs([("PORT", "9000")])).unwrap();
        assert_eq!(cfg.port_for(ServiceId::Inventory), 9000);
        let cfg =
            PlatformConfig::from_env(&EnvSource::from_pairs([("PORT_OFFSET", "1000")])).unwrap();
        assert_eq!(cfg.port_for(ServiceId::Checkout), 9094);
    }
}
