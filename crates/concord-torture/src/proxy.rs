//! A fault-injecting TCP proxy for one direction of one peer link.
//!
//! Every ordered pair of members (a → b) gets its own link: member a dials
//! b through it (`--peer-dial-map`), so cutting the link silences exactly
//! the requests a sends to b (and their answers). A cut is a blackhole,
//! as a real partition is: bytes stop flowing but no connection is reset;
//! connections made while cut are accepted and left silent. When the link
//! heals, the connections held through the cut are closed (their peers see
//! a dead connection and dial again) and new ones pass.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Cut,
    Closed,
}

/// One direction of one link; stops when dropped.
pub struct Link {
    addr: SocketAddr,
    state: watch::Sender<State>,
    accept: JoinHandle<()>,
}

impl Link {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (state, watching) = watch::channel(State::Open);
        let accept = tokio::spawn(accept_loop(listener, target, watching));
        Ok(Link { addr, state, accept })
    }

    /// Where to dial the target through this link.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn cut(&self) {
        self.state.send_replace(State::Cut);
    }

    pub fn heal(&self) {
        self.state.send_replace(State::Open);
    }

    pub fn is_cut(&self) -> bool {
        *self.state.borrow() == State::Cut
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.send_replace(State::Closed);
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, state: watch::Receiver<State>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else { continue };
        tokio::spawn(carry(inbound, target, state.clone()));
    }
}

/// Carries one connection until it ends, the link is cut (then holds it
/// silent until the cut ends) or the link closes.
async fn carry(mut inbound: TcpStream, target: SocketAddr, mut state: watch::Receiver<State>) {
    if *state.borrow() == State::Cut {
        let _ = state.wait_for(|s| *s != State::Cut).await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
        _ = state.wait_for(|s| *s != State::Open) => {}
    }
    // Cut: hold both ends silent until the cut ends.
    let _ = state.wait_for(|s| *s != State::Cut).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn echo(stream: &mut TcpStream, text: &[u8]) -> Option<Vec<u8>> {
        stream.write_all(text).await.ok()?;
        let mut buf = vec![0; text.len()];
        tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buf)).await.ok()?.ok()?;
        Some(buf)
    }

    #[tokio::test]
    async fn a_cut_link_goes_silent_without_a_reset_and_heals() {
        let link = Link::start(echo_server().await).await.unwrap();
        let mut before = TcpStream::connect(link.addr()).await.unwrap();
        assert_eq!(echo(&mut before, b"one").await.as_deref(), Some(&b"one"[..]));

        link.cut();
        assert!(link.is_cut());
        assert_eq!(echo(&mut before, b"two").await, None, "an open connection goes silent");
        let mut during = TcpStream::connect(link.addr()).await.expect("a cut link still accepts");
        assert_eq!(echo(&mut during, b"three").await, None, "a new connection stays silent");

        link.heal();
        let mut after = TcpStream::connect(link.addr()).await.unwrap();
        assert_eq!(echo(&mut after, b"four").await.as_deref(), Some(&b"four"[..]));
        // The connections held through the cut are closed, not resumed.
        let mut buf = [0; 8];
        let read = tokio::time::timeout(Duration::from_secs(2), during.read(&mut buf)).await.unwrap();
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
