//! A TCP load balancer in front of several gateway processes: every new
//! connection goes to the backend chosen at that moment ([`Balancer::route_to`]).
//! The browser opens a new connection per request, so a test decides which
//! process answers each step of a login.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::Arc;

/// A running balancer on 127.0.0.1.
pub struct Balancer {
    /// Its port.
    pub port: u16,
    backend: Arc<AtomicU16>,
    stop: Arc<AtomicBool>,
}

impl Balancer {
    /// Starts a balancer; connections are refused (closed) until a backend is set.
    pub fn start() -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind balancer");
        let port = listener.local_addr().unwrap().port();
        let backend = Arc::new(AtomicU16::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, s) = (backend.clone(), stop.clone());
        std::thread::Builder::new()
            .name(format!("balancer-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    let target = b.load(Ordering::SeqCst);
                    std::thread::spawn(move || forward(client, target));
                }
            })
            .expect("spawn balancer thread");
        Balancer {
            port,
            backend,
            stop,
        }
    }

    /// Sends new connections to 127.0.0.1:`port`.
    pub fn route_to(&self, port: u16) {
        self.backend.store(port, Ordering::SeqCst);
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn forward(client: TcpStream, target: u16) {
    if target == 0 {
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || pipe(client, server));
    pipe(s2, c2);
    let _ = up.join();
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
