//! A TCP relay in front of a database server that a test can cut and restore: the server goes
//! away for whoever connects through the relay (its connections end, new ones are refused)
//! while other tests keep using it directly. For tests only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    /// Where the relay listens (a loopback port of its own, kept across cuts).
    address: SocketAddr,
    target: String,
    runtime: tokio::runtime::Runtime,
    /// The accepting task and every relayed connection's; aborted by a cut.
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Relay {
    /// Relays a loopback port to `target` (`host:port`).
    pub fn start(target: &str) -> Relay {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let address = listener.local_addr().expect("bound");
        let relay = Relay {
            address,
            target: target.to_string(),
            runtime,
            tasks: Arc::default(),
        };
        relay.serve(listener);
        relay
    }

    /// `host:port` to connect to instead of the target.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Ends every relayed connection and refuses new ones.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Accepts again, on the same port (once the aborted listener has let it go).
    pub fn restore(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match self.runtime.block_on(TcpListener::bind(self.address)) {
                Ok(listener) => break listener,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("the relay's port again: {e}"),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target.clone();
        let tasks = self.tasks.clone();
        let accepting = self.runtime.spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                let relayed = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(relayed);
            }
        });
        self.tasks.lock().unwrap().push(accepting);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}
