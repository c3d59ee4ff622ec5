//! Data-parallel CLIP training across processes and machines, on burn's own collective engine.
//!
//! Launch is torchrun's: every process gets `RANK`, `WORLD_SIZE`, `MASTER_ADDR` and `MASTER_PORT`
//! ([`Launch::from_env`], or flags). Rank 0 also runs burn-collective's global orchestrator on
//! `MASTER_PORT` ([`join`]); every rank registers with it as one node and serves its share of the
//! all-reduce on its own data port (`MASTER_PORT + 1 + RANK` unless given). [`Ranks`] then implements
//! [`clip_train::Collective`], the one operation the trainer needs from the other processes: an
//! element-wise sum. See `docs/distributed.md`.
//!
//! Why burn-collective: it is burn 0.21's only collective engine that runs on every backend (the CPU
//! `Flex` one included) and across processes; burn-train's DDP is single-process and CUDA only. It was
//! removed from burn after 0.21, so it stays behind this one crate: a later burn swaps this crate,
//! not the trainer.
//!
//! Failure handling: every exchange has a deadline ([`Launch::timeout`]). When one fails or times
//! out, each rank's data port is probed and the error names the ranks that no longer answer; the
//! process then ends with that error instead of waiting forever (the checkpoint on disk is the last
//! one rank 0 committed, written atomically).

use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};
use burn_communication::Address;
use clip_train::{Collective, TrainError};

/// What can go wrong setting up or running a distributed run.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// `RANK`, `WORLD_SIZE`, `MASTER_ADDR` or `MASTER_PORT` (or their flags) is missing or invalid.
    #[error("distributed launch: {0}")]
    Launch(String),
    /// The coordinator (rank 0's orchestrator) did not accept a connection in time.
    #[error(
        "cannot reach the coordinator at {address} after {seconds} s (is rank 0 running, and is \
         MASTER_ADDR:MASTER_PORT reachable from here?)"
    )]
    Unreachable {
        /// `host:port` tried.
        address: String,
        /// How long it was tried.
        seconds: u64,
    },
    /// burn-collective refused or failed an operation.
    #[error("{0}")]
    Collective(String),
}

/// Where this process stands in a run and how to reach the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// The number of processes.
    pub world_size: usize,
    /// Host of rank 0, where the coordinator listens.
    pub master_addr: String,
    /// The coordinator's port.
    pub master_port: u16,
    /// The host the other ranks reach this one at; `None`: the address this machine uses toward
    /// `master_addr`.
    pub node_host: Option<String>,
    /// This rank's data port; `None`: `master_port + 1 + rank`.
    pub node_port: Option<u16>,
    /// The longest wait for the coordinator at the start and for any one exchange.
    pub timeout: Duration,
}

impl Launch {
    /// torchrun's variables: `RANK`, `WORLD_SIZE`, `MASTER_ADDR` (default 127.0.0.1), `MASTER_PORT`
    /// (default 29500), and `CLIP_NODE_ADDR` / `CLIP_NODE_PORT` for this rank's own address.
    /// `None` without `WORLD_SIZE` (a single process).
    pub fn from_env() -> Result<Option<Self>, DistributedError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let Some(world) = var("WORLD_SIZE") else {
            return Ok(None);
        };
        let number = |name: &str, value: &str| -> Result<usize, DistributedError> {
            value.parse().map_err(|_| {
                DistributedError::Launch(format!("{name}={value:?} is not a non-negative integer"))
            })
        };
        let world_size = number("WORLD_SIZE", &world)?;
        let rank = match var("RANK") {
            Some(r) => number("RANK", &r)?,
            None => {
                return Err(DistributedError::Launch(
                    "WORLD_SIZE is set but RANK is not".into(),
                ))
            }
        };
        let port = |name: &str| -> Result<Option<u16>, DistributedError> {
            var(name)
                .map(|p| {
                    p.parse().map_err(|_| {
                        DistributedError::Launch(format!("{name}={p:?} is not a port number"))
                    })
                })
                .transpose()
        };
        let launch = Self {
            rank,
            world_size,
            master_addr: var("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
            master_port: port("MASTER_PORT")?.unwrap_or(29500),
            node_host: var("CLIP_NODE_ADDR"),
            node_port: port("CLIP_NODE_PORT")?,
            timeout: Duration::from_secs(120),
        };
        launch.validate()?;
        Ok(Some(launch))
    }

    /// Refuses a rank outside `0..world_size`, an empty world, and a data port that would collide.
    pub fn validate(&self) -> Result<(), DistributedError> {
        if self.world_size == 0 {
            return Err(DistributedError::Launch(
                "WORLD_SIZE must be at least 1".into(),
            ));
        }
        if self.rank >= self.world_size {
            return Err(DistributedError::Launch(format!(
                "RANK {} is out of range for WORLD_SIZE {} (ranks are 0 to {})",
                self.rank,
                self.world_size,
                self.world_size - 1
            )));
        }
        if self.node_port.is_none() && usize::from(self.master_port) + 1 + self.rank > 65535 {
            return Err(DistributedError::Launch(format!(
                "MASTER_PORT {} leaves no data port for rank {} (MASTER_PORT + 1 + RANK)",
                self.master_port, self.rank
            )));
        }
        Ok(())
    }

    fn data_port(&self) -> u16 {
        self.node_port
            .unwrap_or(self.master_port + 1 + self.rank as u16)
    }

    /// The host others reach this rank at: given, or the local IPv4 address of the route toward
    /// the master (a UDP "connection" sends nothing; burn-communication's servers listen on IPv4).
    fn own_host(&self) -> Result<String, DistributedError> {
        if let Some(host) = &self.node_host {
            return Ok(host.clone());
        }
        let master = (self.master_addr.as_str(), self.master_port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.find(SocketAddr::is_ipv4))
            .ok_or_else(|| {
                DistributedError::Launch(format!(
                    "MASTER_ADDR {:?} has no IPv4 address",
                    self.master_addr
                ))
            })?;
        if master.ip().is_loopback() {
            return Ok(master.ip().to_string());
        }
        let route = || -> Option<String> {
            let socket = UdpSocket::bind(("0.0.0.0", 0)).ok()?;
            socket.connect(master).ok()?;
            Some(socket.local_addr().ok()?.ip().to_string())
        };
        route().ok_or_else(|| {
            DistributedError::Launch(format!(
                "no route from this machine to MASTER_ADDR {master}: give this rank's address with \
                 --node-addr or CLIP_NODE_ADDR"
            ))
        })
    }
}

/// This process's membership in a run: a [`Collective`] over burn-collective.
pub struct Ranks<B: Backend> {
    rank: usize,
    world_size: usize,
    timeout: Duration,
    /// Every rank's data address (`host:port`), to name the ones that stop answering.
    data_addresses: Vec<String>,
    device: B::Device,
}

const PEER: PeerId = PeerId(0);
/// Bytes of a rank's data address exchanged at the start.
const ADDRESS_BYTES: usize = 128;

/// Joins the run described by `launch` on `device`: rank 0 starts the coordinator, every rank waits
/// until it accepts connections (up to `launch.timeout`), registers, and learns the others' data
/// addresses. A world of one is a valid run of one.
pub fn join<B: Backend>(launch: &Launch, device: &B::Device) -> Result<Ranks<B>, DistributedError> {
    launch.validate()?;
    quiet_logging();
    if launch.rank == 0 {
        // the orchestrator only logs a failed bind, and another program on the port would answer
        // in its place: the port must be free before it starts
        std::net::TcpListener::bind(("0.0.0.0", launch.master_port)).map_err(|e| {
            DistributedError::Launch(format!(
                "MASTER_PORT {} cannot be used for the coordinator: {e}",
                launch.master_port
            ))
        })?;
        start_coordinator(launch.master_port)?;
    }
    let master = format!("{}:{}", launch.master_addr, launch.master_port);
    wait_for(&master, launch.timeout)?;
    let (host, port) = (launch.own_host()?, launch.data_port());
    let ws = |hostport: &str| Address::from_str(&format!("ws://{hostport}"));
    let (global, node) = match (ws(&master), ws(&format!("{host}:{port}"))) {
        (Ok(g), Ok(n)) => (g, n),
        _ => return Err(DistributedError::Launch(format!("bad address {master}"))),
    };
    let config = CollectiveConfig::default()
        .with_num_devices(1)
        .with_num_nodes(launch.world_size as u32)
        .with_global_address(global)
        .with_node_address(node)
        .with_data_service_port(port);
    let on = device.clone();
    let registered = with_deadline(launch.timeout, move || {
        burn_collective::register::<B>(PEER, on, config)
    })
    .ok_or_else(|| {
        DistributedError::Collective(format!(
            "rank {}: the other {} rank(s) did not all register with the coordinator at {master} \
             within {} s",
            launch.rank,
            launch.world_size - 1,
            launch.timeout.as_secs()
        ))
    })?;
    registered
        .map_err(|e| DistributedError::Collective(format!("registering with {master}: {e:?}")))?;
    let mut ranks = Ranks {
        rank: launch.rank,
        world_size: launch.world_size,
        timeout: launch.timeout,
        data_addresses: Vec::new(),
        device: device.clone(),
    };
    ranks.data_addresses = ranks
        .exchange_addresses(&format!("{host}:{port}"))
        .map_err(|e| DistributedError::Collective(e.to_string()))?;
    Ok(ranks)
}

impl<B: Backend> Ranks<B> {
    /// Every rank's `address`, in rank order, through one sum of byte rows.
    fn exchange_addresses(&self, address: &str) -> Result<Vec<String>, TrainError> {
        let mut row = vec![0f32; self.world_size * ADDRESS_BYTES];
        for (i, byte) in address.bytes().take(ADDRESS_BYTES).enumerate() {
            row[self.rank * ADDRESS_BYTES + i] = f32::from(byte);
        }
        let n = row.len();
        let summed: Vec<f32> = self
            .sum(Tensor::from_data(TensorData::new(row, [n]), &self.device))?
            .into_data()
            .to_vec()
            .map_err(|e| TrainError::Collective(format!("{e:?}")))?;
        Ok(summed
            .chunks(ADDRESS_BYTES)
            .map(|bytes| {
                let raw: Vec<u8> = bytes
                    .iter()
                    .map(|&b| b as u8)
                    .take_while(|&b| b != 0)
                    .collect();
                String::from_utf8_lossy(&raw).into_owned()
            })
            .collect())
    }

    /// The ranks whose data port no longer accepts a connection.
    fn silent_ranks(&self) -> Vec<String> {
        self.data_addresses
            .iter()
            .enumerate()
            .filter(|&(rank, _)| rank != self.rank)
            .filter(|(_, address)| !answers(address, Duration::from_secs(2)))
            .map(|(rank, address)| format!("rank {rank} ({address})"))
            .collect()
    }

    fn failure(&self, what: String) -> TrainError {
        let silent = self.silent_ranks();
        let who = if silent.is_empty() {
            "every rank's data port still answers".to_string()
        } else {
            format!("{} stopped answering", silent.join(", "))
        };
        TrainError::Collective(format!("rank {}: {what}; {who}", self.rank))
    }
}

impl<B: Backend> Collective<B> for Ranks<B> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn sum(&self, values: Tensor<B, 1>) -> Result<Tensor<B, 1>, TrainError> {
        if self.world_size == 1 {
            return Ok(values);
        }
        let primitive = values.into_primitive().tensor();
        let (sender, receiver) = mpsc::channel();
        std::thread::Builder::new()
            .name("clip-collective".into())
            .spawn(move || {
                let _ = sender.send(burn_collective::all_reduce::<B>(
                    PEER,
                    primitive,
                    ReduceOperation::Sum,
                ));
            })
            .map_err(|e| TrainError::Collective(format!("an exchange thread: {e}")))?;
        // Rank 0 alone evaluates and writes checkpoints, and the others wait for it in their next
        // exchange: a wait longer than the timeout fails only once a rank stops answering (or after
        // ten timeouts in all, for a rank that answers but never joins)
        let start = Instant::now();
        loop {
            match receiver.recv_timeout(self.timeout) {
                Ok(Ok(summed)) => {
                    return Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
                }
                Ok(Err(e)) => return Err(self.failure(format!("an all-reduce failed ({e:?})"))),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.failure("an all-reduce's thread panicked".into()))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let waited = start.elapsed();
                    if !self.silent_ranks().is_empty() || waited >= self.timeout * 10 {
                        return Err(self.failure(format!(
                            "an all-reduce did not complete within {} s",
                            waited.as_secs()
                        )));
                    }
                }
            }
        }
    }
}

impl<B: Backend> Drop for Ranks<B> {
    fn drop(&mut self) {
        if self.world_size > 1 {
            // unregisters from the coordinator; bounded, since a dead rank may never answer
            let _ = with_deadline(Duration::from_secs(10), || {
                burn_collective::finish_collective::<B>(PEER)
            });
        }
    }
}

/// burn-communication's servers install a logger printing INFO lines on standard output (where
/// `clip train` writes its JSON summary) unless the process has one: this one prints warnings and
/// errors on standard error, or what `RUST_LOG` asks for.
fn quiet_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `work` on its own thread and waits at most `deadline` for it (`None` then; the thread is
/// left to finish or to die with the process).
fn with_deadline<T: Send + 'static>(
    deadline: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = mpsc::channel();
    std::thread::Builder::new()
        .name("clip-collective".into())
        .spawn(move || {
            let _ = sender.send(work());
        })
        .ok()?;
    receiver.recv_timeout(deadline).ok()
}

/// Whether `address` (`host:port`) accepts a TCP connection within `timeout`.
fn answers(address: &str, timeout: Duration) -> bool {
    let addresses: Vec<SocketAddr> = address
        .to_socket_addrs()
        .map(|a| a.collect())
        .unwrap_or_default();
    addresses
        .iter()
        .any(|a| TcpStream::connect_timeout(a, timeout).is_ok())
}

/// Waits until `address` accepts connections, retrying for up to `timeout`.
fn wait_for(address: &str, timeout: Duration) -> Result<(), DistributedError> {
    let start = Instant::now();
    while !answers(address, Duration::from_secs(1)) {
        if start.elapsed() >= timeout {
            return Err(DistributedError::Unreachable {
                address: address.to_string(),
                seconds: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// burn-collective's global orchestrator on `port`, on a runtime of its own (its server blocks a
/// worker on a channel: it needs at least two).
fn start_coordinator(port: u16) -> Result<(), DistributedError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clip-coordinator")
        .enable_all()
        .build()
        .map_err(|e| DistributedError::Launch(format!("coordinator runtime: {e}")))?;
    std::thread::Builder::new()
        .name("clip-coordinator".into())
        .spawn(move || {
            runtime.block_on(burn_collective::start_global_orchestrator(port));
            // the orchestrator returns on SIGINT or SIGTERM, which it intercepts for the whole
            // process: Ctrl-C, `scancel` or a pod's termination must still stop the run
            eprintln!(
                "clip: the coordinator stopped (interrupted, or its server failed); stopping"
            );
            std::process::exit(130);
        })
        .map_err(|e| DistributedError::Launch(format!("coordinator thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(rank: usize, world_size: usize) -> Launch {
        Launch {
            rank,
            world_size,
            master_addr: "127.0.0.1".into(),
            master_port: 29500,
            node_host: None,
            node_port: None,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn launches_out_of_range_are_refused_by_name() {
        let err = launch(2, 2).validate().unwrap_err().to_string();
        assert!(
            err.contains("RANK 2 is out of range for WORLD_SIZE 2"),
            "{err}"
        );
        let err = launch(0, 0).validate().unwrap_err().to_string();
        assert!(err.contains("WORLD_SIZE must be at least 1"), "{err}");
        let mut high = launch(3, 4);
        high.master_port = 65534;
        let err = high.validate().unwrap_err().to_string();
        assert!(err.contains("no data port for rank 3"), "{err}");
        assert_eq!(launch(1, 2).data_port(), 29502);
        assert_eq!(launch(1, 2).own_host().unwrap(), "127.0.0.1");
    }

    #[test]
    fn an_unreachable_coordinator_is_named() {
        // a port nothing listens on: bound, then closed
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let err = wait_for(&address, Duration::from_millis(500))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&address) && err.contains("cannot reach the coordinator"),
            "{err}"
        );
    }
}
