//! `qc`: the one binary. `qc serve <service>` runs one service on its fixed port;
//! `qc serve all` runs every service in one process (development).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use qc_kit::config::EnvSource;
use qc_services::platform::config::{PlatformConfig, ServiceId};
use qc_services::platform::logging;
use qc_services::platform::server::{bind, run, StartingServer};
use qc_services::platform::shutdown::Shutdown;

const USAGE: &str = "usage: qc serve <service|all>
services: inventory, geo, checkout, promo, dispatch, eta, search, tracking, catalog
configuration comes from the environment (see README.md)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let ids: Vec<ServiceId> = match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["serve", "all"] => ServiceId::ALL.to_vec(),
        ["serve", name] => match ServiceId::parse(name) {
            Some(id) => vec![id],
            None => {
                eprintln!("unknown service {name:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let env = EnvSource::from_process();
    let cfg = match PlatformConfig::from_env(&env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if cfg.port.is_some() && ids.len() > 1 {
        eprintln!("PORT overrides one service's port; unset it for `serve all`");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code = runtime.block_on(serve(ids, cfg, env));
    ExitCode::from(code)
}

async fn serve(ids: Vec<ServiceId>, cfg: PlatformConfig, env: EnvSource) -> u8 {
    let name = if ids.len() == 1 { ids[0].name() } else { "all" };
    logging::init(name, &cfg.instance_id, &cfg.log_level, &cfg.log_format);
    let shutdown = Shutdown::new();
    shutdown.listen_for_signals();
    let mut services = Vec::new();
    for id in ids {
        let addr: SocketAddr = match format!("{}:{}", cfg.bind_addr, cfg.port_for(id)).parse() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "bad BIND_ADDR/PORT");
                return 2;
            }
        };
        let listener = match bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(service = id.name(), error = %e, "cannot start");
                return 1;
            }
        };
        let (listener, starting) = match StartingServer::start(id, listener) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::error!(service = id.name(), error = %e, "cannot serve while starting");
                return 1;
            }
        };
        let built = qc_services::build_service(id, &cfg, &env, shutdown.clone()).await;
        starting.finish().await;
        match built {
            Ok(svc) => services.push((svc, listener)),
            Err(e) => {
                tracing::error!(service = id.name(), error = %e, "cannot start");
                return 1;
            }
        }
    }
    let code = run(
        services,
        shutdown,
        Duration::from_secs(cfg.shutdown_timeout_secs),
    )
    .await;
    u8::try_from(code).unwrap_or(1)
}
