//! A TCP proxy that damages gRPC responses on their way from a real server:
//! fault injection for the etcd snapshot stream.
//!
//! It forwards bytes both ways and reads the server's HTTP/2 frames,
//! changing nothing but the payload of DATA frames, so the connection stays
//! valid: [`Tamper::FlipByte`] flips one byte deep inside the fourth gRPC
//! response message (inside the snapshot's data), [`Tamper::DropTrailer`]
//! leaves out the DATA frame that holds just a message with a 32-byte blob
//! (the snapshot's SHA-256 trailer).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// What the proxy does to the responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tamper {
    /// Flip one byte inside the fourth response message of a stream.
    FlipByte,
    /// Leave out a DATA frame holding one message whose last field is a
    /// 32-byte bytes field: etcd's snapshot trailer.
    DropTrailer,
}

/// A running proxy; it stops accepting when dropped.
#[derive(Debug)]
pub struct H2Tamper {
    port: u16,
    tampered: Arc<AtomicUsize>,
    _listener: Arc<TcpListener>,
}

impl H2Tamper {
    /// Proxies 127.0.0.1:`upstream`, damaging its responses as `tamper` says.
    ///
    /// # Panics
    ///
    /// When no port can be bound.
    pub fn start(upstream: u16, tamper: Tamper) -> H2Tamper {
        let listener = Arc::new(TcpListener::bind("127.0.0.1:0").expect("binding a proxy port"));
        let port = listener.local_addr().expect("the proxy's address").port();
        let tampered = Arc::new(AtomicUsize::new(0));
        let accepting = listener.clone();
        let counter = tampered.clone();
        std::thread::spawn(move || {
            for client in accepting.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (Ok(client_reader), Ok(server_writer)) =
                    (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                std::thread::spawn(move || copy(client_reader, server_writer));
                let counter = counter.clone();
                std::thread::spawn(move || frames(server, client, tamper, &counter));
            }
        });
        H2Tamper {
            port,
            tampered,
            _listener: listener,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How many times it damaged something.
    pub fn tampered(&self) -> usize {
        self.tampered.load(Ordering::SeqCst)
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Where one stream is in its gRPC messages.
#[derive(Default)]
struct Messages {
    prefix: Vec<u8>,
    length: usize,
    position: usize,
    index: usize,
}

fn frames(mut server: TcpStream, mut client: TcpStream, tamper: Tamper, tampered: &AtomicUsize) {
    let mut streams: HashMap<u32, Messages> = HashMap::new();
    loop {
        let mut header = [0u8; 9];
        if server.read_exact(&mut header).is_err() {
            break;
        }
        let length =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        if server.read_exact(&mut payload).is_err() {
            break;
        }
        let is_data = kind == 0 && flags & 0x8 == 0;
        if is_data && tamper == Tamper::DropTrailer && is_trailer_frame(&payload) {
            tampered.fetch_add(1, Ordering::SeqCst);
            // The frame may carry END_STREAM: keep that with an empty frame.
            if flags & 0x1 != 0 {
                let mut empty = header;
                empty[0..3].copy_from_slice(&[0, 0, 0]);
                if client.write_all(&empty).is_err() {
                    break;
                }
            }
            continue;
        }
        if is_data && tamper == Tamper::FlipByte {
            let state = streams.entry(stream).or_default();
            for byte in &mut payload {
                if state.prefix.len() < 5 {
                    state.prefix.push(*byte);
                    if state.prefix.len() == 5 {
                        state.length = u32::from_be_bytes([
                            state.prefix[1],
                            state.prefix[2],
                            state.prefix[3],
                            state.prefix[4],
                        ]) as usize;
                        state.position = 0;
                        if state.length == 0 {
                            state.prefix.clear();
                            state.index += 1;
                        }
                    }
                    continue;
                }
                if state.index == 3 && state.length > 1000 && state.position == state.length - 100 {
                    *byte ^= 0x10;
                    tampered.fetch_add(1, Ordering::SeqCst);
                }
                state.position += 1;
                if state.position == state.length {
                    state.prefix.clear();
                    state.index += 1;
                }
            }
        }
        if client.write_all(&header).is_err() || client.write_all(&payload).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// One whole gRPC message whose protobuf ends with field 3, 32 bytes long.
fn is_trailer_frame(payload: &[u8]) -> bool {
    if payload.len() < 5 + 34 {
        return false;
    }
    let length = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]) as usize;
    length == payload.len() - 5
        && payload[payload.len() - 34] == 0x1a
        && payload[payload.len() - 33] == 32
}
