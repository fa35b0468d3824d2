//! Starting and stopping the server: one pinned glommio executor per core, the channel mesh
//! between them, each core's dispatcher (`dispatch::Core`) with its cluster layer, and each
//! core's listeners (SO_REUSEPORT, so the kernel spreads connections over the cores), whose
//! connections the ports (`ports`) serve. Called by `main` and by tests (which start servers
//! in-process and read each core's registries through `ServerHandle::stats`).

use crate::admission::Admission;
use crate::auth::{AuthError, Authenticator};
use crate::base::config::Config;
use crate::dispatch::{Batch, Core, Shared};
use crate::metrics::CoreStats;
use crate::permission::Permissions;
use crate::shard::{Congestion, CHANNEL_BATCHES};
use crossbeam::channel::{Receiver, Sender, TryRecvError};
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use std::fmt;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Why the server could not start.
#[derive(Debug)]
pub enum StartError {
    Auth(AuthError),
    PortInUse {
        address: SocketAddr,
        reason: String,
    },
    Executor(String),
    /// The permissions file is refused (the process exits with status 2, as for a bad config).
    Permission(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Auth(error) => write!(formatter, "auth: {error}"),
            StartError::PortInUse { address, reason } => {
                write!(formatter, "cannot listen on {address}: {reason}")
            }
            StartError::Executor(reason) => write!(formatter, "cannot start a core: {reason}"),
            StartError::Permission(reason) => write!(formatter, "permissions: {reason}"),
        }
    }
}

impl std::error::Error for StartError {}

enum Control {
    Stats(Sender<CoreStats>),
    Shutdown,
}

/// A running server.
pub struct ServerHandle {
    controls: Vec<Sender<Control>>,
    threads: Vec<glommio::ExecutorJoinHandle<()>>,
    pub tcp_address: Option<SocketAddr>,
    pub http_address: Option<SocketAddr>,
    pub cores: usize,
}

impl ServerHandle {
    /// What every core holds right now.
    pub fn stats(&self) -> Vec<CoreStats> {
        let mut all = Vec::new();
        for control in &self.controls {
            let (reply, answer) = crossbeam::channel::bounded(1);
            if control.send(Control::Stats(reply)).is_ok() {
                if let Ok(stats) = answer.recv_timeout(Duration::from_secs(5)) {
                    all.push(stats);
                }
            }
        }
        all
    }

    /// Stops every core and waits for them.
    pub fn shutdown(self) {
        for control in &self.controls {
            let _ = control.send(Control::Shutdown);
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// The CPUs cores are pinned to, in order.
fn cpu_ids() -> Vec<usize> {
    let mut ids: Vec<usize> = glommio::CpuSet::online()
        .map(|set| set.iter().map(|location| location.cpu).collect())
        .unwrap_or_default();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// A listening socket with SO_REUSEPORT (every core binds the same port; the kernel spreads
/// connections) and SO_REUSEADDR (a restart is not refused while old connections sit in
/// TIME-WAIT; glommio's own `bind` sets only the first).
pub fn listen(address: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::IntoRawFd;
    let domain = socket2::Domain::for_address(address);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&address.into())?;
    socket.listen(1024)?;
    let fd = socket.into_raw_fd();
    // SAFETY: `fd` is a listening TCP socket we just created and whose ownership
    // `into_raw_fd` gave up; glommio's listener takes it over and closes it on drop.
    Ok(unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Fails early and clearly when another process holds the port. (glommio binds with
/// SO_REUSEPORT, so a second server on the same port would otherwise silently share traffic.)
fn check_port_free(address: SocketAddr) -> Result<(), StartError> {
    std::net::TcpListener::bind(address)
        .map(drop)
        .map_err(|error| StartError::PortInUse {
            address,
            reason: error.to_string(),
        })
}

/// The permissions file compiled once for every core; `None` when everything is allowed.
fn compile_permissions(config: &Config) -> Result<Option<Arc<Permissions>>, StartError> {
    let Some(file) = &config.permission else {
        return Ok(None);
    };
    let refused =
        |reason: String| StartError::Permission(format!("{}: {reason}", file.path.display()));
    let permissions = Permissions::compile(&file.rules).map_err(|error| refused(error.0))?;
    let permissions = permissions.with_max_rule_iterations(file.max_rule_iterations);
    crate::info!("permissions: rules from {}", file.path.display());
    Ok(Some(Arc::new(permissions)))
}

/// Starts the server; returns once every core listens.
pub fn start(config: Config) -> Result<ServerHandle, StartError> {
    let cpus = cpu_ids();
    let cores = config.cores.unwrap_or(cpus.len().max(1)).max(1);
    let auth = Arc::new(Authenticator::from_config(&config.auth).map_err(StartError::Auth)?);
    let permissions = compile_permissions(&config)?;
    if config.tcp_enabled {
        check_port_free(config.tcp_address)?;
    }
    if config.http_enabled {
        check_port_free(config.http_address)?;
    }
    let config = Arc::new(config);
    let mesh: MeshBuilder<Batch, _> = MeshBuilder::full(cores, CHANNEL_BATCHES);
    let (ready_sender, ready) = crossbeam::channel::unbounded::<Result<usize, String>>();
    let congestion = Congestion::new(cores);
    let admission = Admission::new(&config.limits);
    let mut controls = Vec::new();
    let mut threads = Vec::new();
    for id in 0..cores {
        let placement = if cores <= cpus.len() {
            Placement::Fixed(cpus[id])
        } else {
            Placement::Unbound
        };
        let (control_sender, control) = crossbeam::channel::unbounded();
        controls.push(control_sender);
        let config = Arc::clone(&config);
        let auth = Arc::clone(&auth);
        let permissions = permissions.clone();
        let mesh = mesh.clone();
        let ready_sender = ready_sender.clone();
        let congestion = Arc::clone(&congestion);
        let admission = Arc::clone(&admission);
        let mut builder = LocalExecutorBuilder::new(placement)
            .name(&format!("core-{id}"))
            .io_memory(config.io_memory);
        if !config.spin_before_park.is_zero() {
            builder = builder.spin_before_park(config.spin_before_park);
        }
        let thread = builder
            .spawn(move || {
                run_core(CoreSetup {
                    id,
                    cores,
                    config,
                    auth,
                    permissions,
                    admission,
                    congestion,
                    mesh,
                    control,
                    ready: ready_sender,
                })
            })
            .map_err(|error| StartError::Executor(error.to_string()))?;
        threads.push(thread);
    }
    drop(ready_sender);
    let handle = ServerHandle {
        controls,
        threads,
        tcp_address: config.tcp_enabled.then_some(config.tcp_address),
        http_address: config.http_enabled.then_some(config.http_address),
        cores,
    };
    for _ in 0..cores {
        match ready.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => {}
            Ok(Err(reason)) => {
                handle.shutdown();
                return Err(StartError::Executor(reason));
            }
            Err(_) => {
                handle.shutdown();
                return Err(StartError::Executor(
                    "a core did not report ready within 30 s".into(),
                ));
            }
        }
    }
    // The probe above and our SO_REUSEPORT binds are not one atomic step: a server started
    // at the same moment may have bound too. Look again, now that ours are bound.
    let addresses = [
        config.tcp_enabled.then_some(config.tcp_address),
        config.http_enabled.then_some(config.http_address),
    ];
    for address in addresses.into_iter().flatten() {
        if crate::ports::net::shared_with_another_process(address) {
            handle.shutdown();
            return Err(StartError::PortInUse {
                address,
                reason: "already in use by another process that listens with SO_REUSEPORT (the \
                         kernel would split connections between the two servers)"
                    .into(),
            });
        }
    }
    Ok(handle)
}

/// What one core needs to start.
struct CoreSetup {
    id: usize,
    cores: usize,
    config: Arc<Config>,
    auth: Arc<Authenticator>,
    permissions: Option<Arc<Permissions>>,
    admission: Arc<Admission>,
    congestion: Arc<Congestion>,
    mesh: MeshBuilder<Batch, glommio::channels::channel_mesh::Full>,
    control: Receiver<Control>,
    ready: Sender<Result<usize, String>>,
}

async fn run_core(setup: CoreSetup) {
    let CoreSetup {
        id,
        cores,
        config,
        auth,
        permissions,
        admission,
        congestion,
        mesh,
        control,
        ready,
    } = setup;
    crate::logging::set_core(id);
    let shared = Shared {
        config: Arc::clone(&config),
        auth,
        permissions,
        admission,
    };
    let core = Rc::new(Core::new(id, cores, shared, congestion));
    let cluster = config.cluster.as_ref().map(|cluster_config| {
        let cluster = crate::cluster::Cluster::new(id, cluster_config);
        core.set_cluster(Rc::clone(&cluster) as Rc<dyn crate::dispatch::ClusterSeam>);
        cluster
    });
    if let Some(cluster) = &config.cluster {
        if id == 0 {
            crate::info!(
                "cluster: node {} through Redis at {}",
                cluster.node,
                cluster.redis.address()
            );
        }
    }
    let (senders, mut receivers) = match mesh.join().await {
        Ok(joined) => joined,
        Err(error) => {
            let _ = ready.send(Err(format!("core {id} could not join the mesh: {error}")));
            return;
        }
    };
    let senders = Rc::new(senders);
    glommio::spawn_local(Rc::clone(&core).run_deadlines()).detach();
    glommio::spawn_local(Rc::clone(&core).run_broadcasts()).detach();
    if let Some(cluster) = &cluster {
        crate::cluster::Cluster::start(&core, cluster);
    }
    for peer in (0..cores).filter(|peer| *peer != id) {
        let flusher = Rc::clone(core.mesh()).run_flusher(peer, Rc::clone(&senders));
        glommio::spawn_local(flusher).detach();
    }
    for (peer, receiver) in receivers.streams() {
        let core = Rc::clone(&core);
        glommio::spawn_local(async move {
            while let Some(batch) = receiver.recv().await {
                core.handle_batch(batch);
            }
            crate::debug!("mesh channel from core {peer} closed");
        })
        .detach();
    }
    if config.tcp_enabled {
        match listen(config.tcp_address) {
            Ok(listener) => {
                let core = Rc::clone(&core);
                glommio::spawn_local(crate::ports::tcp::accept_tcp(core, listener)).detach();
            }
            Err(error) => {
                let _ = ready.send(Err(format!(
                    "core {id} cannot listen on {}: {error}",
                    config.tcp_address
                )));
                return;
            }
        }
    }
    if config.http_enabled {
        match listen(config.http_address) {
            Ok(listener) => {
                glommio::spawn_local(crate::ports::heartbeat::run(Rc::clone(&core))).detach();
                let core = Rc::clone(&core);
                glommio::spawn_local(crate::ports::http::accept_http(core, listener)).detach();
            }
            Err(error) => {
                let _ = ready.send(Err(format!(
                    "core {id} cannot listen on {}: {error}",
                    config.http_address
                )));
                return;
            }
        }
    }
    let _ = ready.send(Ok(id));
    loop {
        match control.try_recv() {
            Ok(Control::Stats(reply)) => {
                let _ = reply.send(core.stats());
            }
            Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => glommio::timer::sleep(Duration::from_millis(20)).await,
        }
    }
    if id == 0 {
        if let Some(cluster) = &cluster {
            // Leave the cluster now rather than after clusterNodeInactiveTimeout.
            let leave = cluster.leave();
            futures_lite::future::or(leave, async {
                glommio::timer::sleep(Duration::from_millis(500)).await;
            })
            .await;
        }
    }
    crate::debug!("core {id} stopping");
}
