//! A fault-injecting TCP proxy on loopback, for putting between hubs and a broker (or any
//! client and server): it passes bytes through, and on command cuts every open connection,
//! stalls the traffic (bytes are held, not lost, until it passes again), slows it (a delay
//! before each chunk), or refuses new connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Forward at once.
    Pass,
    /// Hold every byte until the flow changes.
    Stall,
    /// Wait this long before forwarding each chunk.
    Slow(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    flow: Flow,
    /// Bumped by `cut`: connections of an older generation close.
    generation: u64,
    refuse: bool,
}

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<watch::Sender<State>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port for the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let state = Arc::new(
            watch::channel(State {
                flow: Flow::Pass,
                generation: 0,
                refuse: false,
            })
            .0,
        );
        let shared = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.borrow().refuse {
                    drop(client);
                    continue;
                }
                let state = shared.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let generation = state.borrow().generation;
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = pump(cr, sw, state.clone(), generation);
                    let down = pump(sr, cw, state, generation);
                    // Either direction ending (a close, or a cut) ends the connection.
                    tokio::select! {
                        _ = up => {}
                        _ = down => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            state,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection now; new ones are still accepted.
    pub fn cut(&self) {
        self.state.send_modify(|s| s.generation += 1);
    }

    /// Sets what happens to the traffic from now on.
    pub fn set(&self, flow: Flow) {
        self.state.send_modify(|s| s.flow = flow);
    }

    /// Refuses (accepts and closes at once) new connections while `on`.
    pub fn refuse(&self, on: bool) {
        self.state.send_modify(|s| s.refuse = on);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

/// Copies `from` to `to` under the proxy's state, until either side closes or a cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = state.wait_for(|s| s.generation != generation) => return,
        };
        loop {
            let now = *state.borrow_and_update();
            if now.generation != generation {
                return;
            }
            match now.flow {
                Flow::Pass => break,
                Flow::Slow(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                Flow::Stall => {
                    if state.changed().await.is_err() {
                        return;
                    }
                }
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
