//! `vigil serve`: the host as a long-running service.
//!
//! Threads: the caller's thread runs the pipeline (read batches, call
//! detectors) with its audit stage and enrichment workers, as `vigil run`
//! does; a small tokio runtime of its own serves HTTP ingest ([`ingest`])
//! and the admin API ([`admin`]) and waits for signals; the packs
//! directory watcher reloads on its own thread (`control::watch`). A slow
//! plugin holds up only the pipeline's thread, never the reactor.
//!
//! Start: open the host with no pack, load every pack directory as a
//! reload would (a pack that fails to load or fails its tests is refused,
//! recorded and shown in `/status`; the others run), then serve.
//! `SIGHUP` and `POST /reload` reload every pack directory; a file change
//! reloads the pack directories it touched.
//!
//! Stop (`SIGTERM`, `SIGINT`): stop accepting connections, let requests in
//! flight finish (each waits for its events to be in the audit log), close
//! the ingest stream, let the pipeline drain its batches and enrichments,
//! then write `host-stop`, sync and close the audit log; exit 0.

pub mod admin;
pub mod ingest;
pub mod metrics;
pub mod webhook;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufWriter};
use std::path::PathBuf;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::watch;

use crate::control::reload::{Outcome, ReloadAll, Reloader};
use crate::control::status;
use crate::control::watch::watch_packs;
use crate::host::{Host, HostError, HostOptions};
use crate::load::policy::Policy;
use crate::load::service::ServeConfig;
use crate::pipeline::dispatch::RunStats;
use crate::pipeline::sink::{FindingSink, JsonLines};

use admin::{Admin, AdminError, GrantTarget, admin_token};
use ingest::Ingest;
use metrics::Metrics;
use webhook::Webhook;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The config has no `[serve]` table.
    #[error(
        "{0} has no [serve] table: add one with at least `packs_dir` (every field: \
         host/src/load/service.rs, README \"Run as a service\")"
    )]
    NoServeTable(String),
    /// The packs directory is missing.
    #[error("[serve] packs_dir {0}: {1}")]
    PacksDir(PathBuf, io::Error),
    /// The admin API's configuration is refused.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A listener could not be bound.
    #[error("listening on {addr} ({what}): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// `[serve.ingest]` or `[serve.admin]`.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
    /// The findings output could not be opened.
    #[error("[serve.output] {path}: {source}")]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The packs directory could not be watched.
    #[error("watching [serve] packs_dir {0}: {1}")]
    Watch(PathBuf, notify::Error),
    /// The async runtime could not start.
    #[error("starting the network runtime: {0}")]
    Runtime(io::Error),
    /// The host failed.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Where the service keeps its state and reads its config.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The config file's name, for messages.
    pub config_file: String,
    /// The parsed config (policy and `[serve]`).
    pub policy: Policy,
    /// Plugin state, compile cache, revocation list.
    pub state_dir: PathBuf,
    /// The audit log (default: the policy's).
    pub audit_dir: Option<PathBuf>,
}

/// What a served run did, for the exit line.
#[derive(Debug)]
pub struct Served {
    /// The pipeline's counters.
    pub stats: RunStats,
    /// Why it stopped.
    pub reason: String,
    /// The audit log.
    pub audit_dir: PathBuf,
}

/// Run the service until SIGTERM or SIGINT (see the module docs).
pub fn serve(options: ServeOptions) -> Result<Served, ServeError> {
    let mut config = (options.policy.serve.clone())
        .ok_or_else(|| ServeError::NoServeTable(options.config_file.clone()))?;
    std::fs::read_dir(&config.packs_dir)
        .map_err(|e| ServeError::PacksDir(config.packs_dir.clone(), e))?;
    // One spelling of every pack directory: the watcher's events, the
    // reloader's directories and `/status` agree.
    config.packs_dir = std::path::absolute(&config.packs_dir)
        .map_err(|e| ServeError::PacksDir(config.packs_dir.clone(), e))?;
    let token = match &config.admin {
        Some(admin) => admin_token(admin)?,
        None => None,
    };
    let primary = open_output(&config)?;
    let started_at = Timestamp::now();
    let audit_config = options.policy.audit.clone();
    let batch_size = options.policy.batch_size();
    let mut host = Host::open(
        HostOptions {
            policy: options.policy,
            state_dir: options.state_dir.clone(),
            audit_dir: options.audit_dir,
            command: "serve".into(),
        },
        &[],
    )?;
    let metrics = Arc::new(Metrics::new());
    host.observe(metrics.clone());
    let notices = host.notice_board();
    let webhook = match &config.webhook {
        Some(c) => Some(
            Webhook::start(c, notices.clone(), Some(metrics.clone()))
                .map_err(ServeError::Runtime)?,
        ),
        None => None,
    };
    let mut sink = Outputs { primary, webhook };
    let reloader = Arc::new(Reloader::new(
        host.runtime().clone(),
        host.packs().clone(),
        notices,
        Default::default(),
        config.run_pack_tests(),
    ));
    let reload_all = {
        let (reloader, metrics, dir) =
            (reloader.clone(), metrics.clone(), config.packs_dir.clone());
        let reload_all: ReloadAll = Arc::new(move |trigger: &str| {
            let outcomes = reloader.reload_all(&dir, trigger);
            for (_, outcome) in &outcomes {
                count(&metrics, outcome);
            }
            outcomes
        });
        reload_all
    };
    let network = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("vigil-net")
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let (stop_tx, stop_rx) = watch::channel(None::<String>);
    // Signals first: a SIGTERM while the packs load still stops cleanly.
    network.spawn(signals(stop_tx, reload_all.clone()));
    reload_all("start");
    let _watcher = {
        let (reloader, metrics) = (reloader.clone(), metrics.clone());
        watch_packs(
            &config.packs_dir,
            config.reload_settle(),
            move |dirs: BTreeSet<PathBuf>| {
                for dir in dirs {
                    let trigger = format!("watch: {}", dir.display());
                    count(&metrics, &reloader.reload_dir(&dir, &trigger));
                }
            },
        )
        .map_err(|e| ServeError::Watch(config.packs_dir.clone(), e))?
    };

    let (ingest, mut source) = match &config.ingest {
        Some(c) => Ingest::new(c, metrics.clone()),
        None => Ingest::with_limits(8 << 20, 64 << 20),
    };
    let mut servers = Vec::new();
    if let Some(c) = &config.ingest {
        let listener = bind(&network, c.listen, "[serve.ingest]")?;
        // The bound address (port 0 in the config picks a free one).
        let addr = listener.local_addr().unwrap_or(c.listen);
        tracing::info!("ingest: POST http://{addr}/ingest");
        servers.push(network.spawn(serve_router(listener, ingest.router(), stop_rx.clone())));
    }
    if let Some(c) = &config.admin {
        let revocations = host.runtime().revocations.clone();
        let (packs, status_reloader) = (host.packs().clone(), reloader.clone());
        let admin = Admin {
            status: Arc::new(move || {
                status::snapshot(started_at, &packs, &revocations, status_reloader.status())
            }),
            reload: reload_all.clone(),
            metrics: metrics.clone(),
            ingest: ingest.clone(),
            grants: GrantTarget {
                state_dir: options.state_dir.clone(),
                audit: audit_config,
                audit_dir: host.audit_dir().to_owned(),
            },
            token,
        };
        let listener = bind(&network, c.listen, "[serve.admin]")?;
        let addr = listener.local_addr().unwrap_or(c.listen);
        tracing::info!("admin: http://{addr}/status");
        servers.push(network.spawn(serve_router(listener, admin.router(), stop_rx.clone())));
    }
    // Once every server has finished its requests (or `DRAIN` is over:
    // a client that never finishes its body cannot hold the stop), the
    // stream closes and the pipeline drains.
    let closing = {
        let (ingest, mut stop_rx) = (ingest.clone(), stop_rx.clone());
        network.spawn(async move {
            let _ = stop_rx.wait_for(Option::is_some).await;
            let drained = tokio::time::timeout(DRAIN, async {
                for server in servers {
                    let _ = server.await;
                }
            });
            if drained.await.is_err() {
                tracing::warn!(
                    "requests still open after {} s; closing ingest without them",
                    DRAIN.as_secs()
                );
            }
            ingest.close();
        })
    };
    tracing::info!("serving packs from {}", config.packs_dir.display());
    let run = host.run(&mut source, &mut sink, None, batch_size);
    // Requests whose events did not make it into the log get 503.
    ingest.abandon();
    let reason = stop_rx
        .borrow()
        .clone()
        .unwrap_or_else(|| "the pipeline stopped".to_owned());
    drop(closing);
    network.shutdown_timeout(std::time::Duration::from_secs(5));
    let stats = match run {
        Ok(stats) => stats,
        Err(e) => {
            let _ = sink.flush();
            return Err(e.into());
        }
    };
    sink.flush().map_err(|source| ServeError::Output {
        path: config
            .output
            .as_ref()
            .map_or("-".into(), |o| o.path.clone()),
        source,
    })?;
    // Its undelivered findings are recorded as the host closes.
    if let Some(webhook) = sink.webhook.take() {
        let sent = webhook.close();
        tracing::info!("webhook: {sent} findings delivered");
    }
    let audit_dir = host.audit_dir().to_owned();
    host.close(&format!("serve stopped: {reason}"))?;
    Ok(Served {
        stats,
        reason,
        audit_dir,
    })
}

/// Longest a stop waits for open requests before closing ingest anyway.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

fn count(metrics: &Metrics, outcome: &Outcome) {
    if *outcome != Outcome::Nothing {
        metrics.reloaded(outcome.name());
    }
}

/// Where a served run's findings go: the file or stdout, and the webhook.
struct Outputs {
    primary: Box<dyn FindingSink>,
    webhook: Option<Webhook>,
}

impl FindingSink for Outputs {
    fn emit(&mut self, finding: &crate::finding::FindingRecord) -> io::Result<()> {
        self.primary.emit(finding)?;
        if let Some(webhook) = &mut self.webhook {
            webhook.emit(finding)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.primary.flush()?;
        if let Some(webhook) = &mut self.webhook {
            webhook.flush()?;
        }
        Ok(())
    }
}

/// `[serve.output]`: a rotating JSON Lines file, else standard output.
fn open_output(config: &ServeConfig) -> Result<Box<dyn FindingSink>, ServeError> {
    let Some(output) = &config.output else {
        return Ok(Box::new(JsonLines::new(BufWriter::new(io::stdout()))));
    };
    // Probe that it can be created here, with a message naming the field;
    // file-rotate itself opens lazily.
    File::options()
        .create(true)
        .append(true)
        .open(&output.path)
        .map_err(|source| ServeError::Output {
            path: output.path.clone(),
            source,
        })?;
    let limit = match output.rotate_bytes() {
        // After the write that passes the size: a finding's line is never
        // split across two files.
        Some(bytes) => file_rotate::ContentLimit::BytesSurpassed(bytes as usize),
        None => file_rotate::ContentLimit::None,
    };
    let file = file_rotate::FileRotate::new(
        &output.path,
        file_rotate::suffix::AppendCount::new(output.keep() as usize),
        limit,
        file_rotate::compression::Compression::None,
        None,
    );
    Ok(Box::new(JsonLines::new(file)))
}

fn bind(
    network: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    what: &'static str,
) -> Result<tokio::net::TcpListener, ServeError> {
    network
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|source| ServeError::Bind { addr, what, source })
}

async fn serve_router(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<Option<String>>,
) {
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(Option::is_some).await;
        })
        .await;
    if let Err(e) = served {
        tracing::error!("HTTP server: {e}");
    }
}

async fn signals(stop: watch::Sender<Option<String>>, reload: ReloadAll) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the host with SIGKILL");
        return;
    };
    let mut stopping = false;
    loop {
        let reason = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                // Not awaited: a stop must not wait for a reload.
                let reload = reload.clone();
                tokio::task::spawn_blocking(move || reload("SIGHUP"));
                continue;
            }
        };
        if stopping {
            // An operator who asks twice wants out now; what was
            // acknowledged is in the log already.
            tracing::warn!("{reason} again: exiting without draining");
            std::process::exit(130);
        }
        stopping = true;
        tracing::info!("{reason}: stopping (finishing requests in flight, draining the pipeline)");
        let _ = stop.send(Some(reason.to_owned()));
    }
}
