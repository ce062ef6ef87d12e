//! A network link that a test can cut and restore: a TCP relay on a free
//! loopback port in front of a server. Cutting it closes every connection
//! through it and refuses new ones, as a broken network does, while the
//! server behind keeps running with all its state (a killed and restarted
//! server loses what is in memory, and a restarted broker breaks an
//! idempotent producer's sequence in ways a network outage does not).

use std::io;

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinHandle,
};

/// A relay from [`Link::port`] to a server's port on 127.0.0.1.
pub struct Link {
    /// The port clients connect to instead of the server's.
    pub port: u16,
    up: watch::Sender<bool>,
    relay: JoinHandle<()>,
}

impl Link {
    /// A relay to `target`, up.
    pub async fn to(target: u16) -> io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (up, watched) = watch::channel(true);
        let relay = tokio::spawn(relay(listener, target, watched));
        Ok(Link { port, up, relay })
    }

    /// Closes every connection through the link; new ones are closed at once.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

async fn relay(listener: TcpListener, target: u16, up: watch::Receiver<bool>) {
    while let Ok((client, _)) = listener.accept().await {
        if !*up.borrow() {
            continue; // dropped: the connection is closed at once
        }
        tokio::spawn(pass(client, target, up.clone()));
    }
}

/// Relays one connection until either side closes it or the link is cut.
async fn pass(mut client: TcpStream, target: u16, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    tokio::select! {
        _ = copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = socket.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        port
    }

    async fn echoes(port: u16) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            return false;
        };
        let mut answer = [0u8; 4];
        stream.write_all(b"ping").await.is_ok()
            && stream.read_exact(&mut answer).await.is_ok()
            && &answer == b"ping"
    }

    #[tokio::test]
    async fn a_cut_link_closes_connections_until_it_is_restored() {
        let link = Link::to(echo_server().await).await.expect("link");
        let mut open = TcpStream::connect(("127.0.0.1", link.port))
            .await
            .expect("connect");
        assert!(echoes(link.port).await);
        link.cut();
        let mut byte = [0u8; 1];
        assert_eq!(open.read(&mut byte).await.expect("closed, not failed"), 0);
        assert!(!echoes(link.port).await);
        link.restore();
        assert!(echoes(link.port).await);
    }
}
