//! Environment configuration: one reader that validates every variable and reports all problems
//! at once, naming the variable and the reason (00-platform "Configuration").

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// Where variables come from: the process environment, then `.env.local` for unset ones.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    vars: HashMap<String, String>,
}

impl EnvSource {
    /// The process environment, filled in from `./.env.local` where a variable is unset.
    pub fn from_process() -> Self {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        if let Ok(text) = std::fs::read_to_string(".env.local") {
            for (k, v) in parse_dotenv(&text) {
                vars.entry(k).or_insert(v);
            }
        }
        Self { vars }
    }

    /// A fixed set of variables (tests, embedding).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// A reader that collects errors instead of stopping at the first.
    pub fn reader(&self) -> EnvReader<'_> {
        EnvReader {
            env: self,
            errors: Vec::new(),
        }
    }
}

fn parse_dotenv(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let l = l.strip_prefix("export ").unwrap_or(l);
            let (k, v) = l.split_once('=')?;
            let v = v.trim().trim_matches('"').trim_matches('\'');
            Some((k.trim().to_string(), v.to_string()))
        })
        .collect()
}

/// Reads typed values; every failure is recorded as "NAME: reason".
#[derive(Debug)]
pub struct EnvReader<'a> {
    env: &'a EnvSource,
    errors: Vec<String>,
}

impl EnvReader<'_> {
    pub fn string(&mut self, name: &str, default: &str) -> String {
        self.env.get(name).unwrap_or(default).to_string()
    }

    /// A string that must satisfy `check` (which explains the rule on failure).
    pub fn checked(
        &mut self,
        name: &str,
        default: &str,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> String {
        let v = self.string(name, default);
        if let Err(why) = check(&v) {
            self.errors.push(format!("{name}={v:?}: {why}"));
        }
        v
    }

    /// A number within `[min, max]`.
    pub fn number<T>(&mut self, name: &str, default: T, min: T, max: T) -> T
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(raw) = self.env.get(name) else {
            return default;
        };
        match raw.trim().parse::<T>() {
            Ok(v) if v >= min && v <= max => v,
            Ok(_) => {
                self.errors
                    .push(format!("{name}={raw:?}: must be within [{min}, {max}]"));
                default
            }
            Err(_) => {
                self.errors.push(format!(
                    "{name}={raw:?}: not a number (expected [{min}, {max}])"
                ));
                default
            }
        }
    }

    /// A secret of at least 16 bytes; `dev_default` is used when unset, and refused in
    /// production (`production` true).
    pub fn secret(&mut self, name: &str, dev_default: &str, production: bool) -> String {
        self.checked(name, dev_default, |v| {
            if production && v == dev_default {
                Err("set a secret of your own in production".into())
            } else if v.len() < 16 {
                Err("at least 16 bytes".into())
            } else {
                Ok(())
            }
        })
    }

    /// One of a fixed set of words.
    pub fn choice(&mut self, name: &str, default: &str, allowed: &[&str]) -> String {
        self.checked(name, default, |v| {
            if allowed.contains(&v) {
                Ok(())
            } else {
                Err(format!("must be one of {}", allowed.join("|")))
            }
        })
    }

    /// Ok, or every problem found, one per line.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError(self.errors))
        }
    }
}

/// Invalid configuration: one line per variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  {}", .0.join("\n  "))]
pub struct ConfigError(pub Vec<String>);

/// Where the stores are; shared by the services and the simulator's live backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub redis_url: String,
    pub database_url: String,
    /// Prepended to every Redis key and channel.
    pub key_prefix: String,
    /// Postgres schema for every table (`public` unless a test or simulator run isolates itself).
    pub db_schema: String,
    /// Upper bound on one Redis round trip before the caller gets `UNAVAILABLE`.
    pub redis_timeout_ms: u64,
}

pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/qcommerce";

impl StoreConfig {
    pub fn read(r: &mut EnvReader<'_>) -> Self {
        Self {
            redis_url: r.checked("REDIS_URL", DEFAULT_REDIS_URL, |v| {
                if v.starts_with("redis://") || v.starts_with("rediss://") {
                    Ok(())
                } else {
                    Err("must start with redis:// or rediss://".into())
                }
            }),
            database_url: r.checked("DATABASE_URL", DEFAULT_DATABASE_URL, |v| {
                if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                    Ok(())
                } else {
                    Err("must start with postgres:// or postgresql://".into())
                }
            }),
            key_prefix: r.checked("QC_KEY_PREFIX", "", check_key_prefix),
            db_schema: r.checked("QC_DB_SCHEMA", "public", check_schema_name),
            redis_timeout_ms: r.number("REDIS_TIMEOUT_MS", 1000, 10, 60_000),
        }
    }
}

/// `[A-Za-z0-9_.:-]*` (00-platform): a prefix can never open a hash tag.
pub fn check_key_prefix(v: &str) -> Result<(), String> {
    if v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
    {
        Ok(())
    } else {
        Err("must be at most 64 characters of [A-Za-z0-9_.:-]".into())
    }
}

/// A plain lower-case SQL identifier, so it can be interpolated safely.
pub fn check_schema_name(v: &str) -> Result<(), String> {
    let mut bytes = v.bytes();
    let first_ok = matches!(bytes.next(), Some(b'a'..=b'z' | b'_'));
    if first_ok
        && v.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        Ok(())
    } else {
        Err("must match [a-z_][a-z0-9_]{0,62}".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_enough_and_never_the_development_value_in_production() {
        let dev = "development-secret-xyz";
        let read = |pairs: &[(&str, &str)], production| {
            let env = EnvSource::from_pairs(pairs.iter().copied());
            let mut r = env.reader();
            let v = r.secret("S", dev, production);
            r.finish().map(|_| v)
        };
        assert_eq!(read(&[], false).unwrap(), dev);
        assert!(read(&[], true).unwrap_err().to_string().contains("S="));
        assert!(read(&[("S", "short")], false).is_err());
        assert_eq!(
            read(&[("S", "a-production-secret")], true).unwrap(),
            "a-production-secret"
        );
    }

    #[test]
    fn defaults_apply_when_unset() {
        let env = EnvSource::from_pairs([]);
        let mut r = env.reader();
        let s = StoreConfig::read(&mut r);
        r.finish().unwrap();
        assert_eq!(s.redis_url, DEFAULT_REDIS_URL);
        assert_eq!(s.db_schema, "public");
        assert_eq!(s.redis_timeout_ms, 1000);
    }

    #[test]
    fn every_bad_variable_is_reported_by_name() {
        let env = EnvSource::from_pairs([
            ("REDIS_URL", "http://x"),
            ("QC_KEY_PREFIX", "a{b"),
            ("REDIS_TIMEOUT_MS", "fast"),
            ("QC_DB_SCHEMA", "Drop Table"),
        ]);
        let mut r = env.reader();
        StoreConfig::read(&mut r);
        let err = r.finish().unwrap_err();
        let text = err.to_string();
        for name in [
            "REDIS_URL",
            "QC_KEY_PREFIX",
            "REDIS_TIMEOUT_MS",
            "QC_DB_SCHEMA",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert_eq!(err.0.len(), 4);
    }

    #[test]
    fn number_out_of_range_is_refused() {
        let env = EnvSource::from_pairs([("N", "0")]);
        let mut r = env.reader();
        assert_eq!(r.number("N", 5u32, 1, 10), 5);
        assert!(r.finish().unwrap_err().to_string().contains("[1, 10]"));
    }

    #[test]
    fn dotenv_lines_parse() {
        let pairs = parse_dotenv("# c\nexport A=1\nB=\"two\"\n\nC = x\n");
        assert_eq!(
            pairs,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two".into()),
                ("C".into(), "x".into())
            ]
        );
    }
}
