//! The RDB over the replication protocol, for a server whose files are not
//! on this host: `REPLCONF rdb-only 1` (Redis 7.0+: the server sends the
//! RDB and no command stream after it), `REPLCONF capa eof` (so a server
//! with diskless sync streams the RDB without writing it to its disk), then
//! `PSYNC ? -1`, answered `+FULLRESYNC <replid> <offset>` and the RDB as a
//! bulk payload: `$<length>\r\n<bytes>`, or `$EOF:<40-byte mark>\r\n<bytes>
//! <mark>` when streamed diskless.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

/// How long the server may stay silent; while it prepares the RDB it sends
/// a newline every second.
const SILENCE: Duration = Duration::from_secs(60);

/// Where the replication stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FullResync {
    /// The server's replication id.
    pub(super) replid: String,
    /// The replication offset the RDB holds.
    pub(super) offset: u64,
    /// Whether the server took `rdb-only` (7.0+).
    pub(super) rdb_only: bool,
    /// Whether the RDB was streamed without touching the server's disk.
    pub(super) diskless: bool,
}

trait Connection: Read + Write + Send {}
impl<T: Read + Write + Send> Connection for T {}

/// Connects, logs in and starts a full sync; returns a reader of exactly
/// the RDB's bytes. `Err` holds the server's words where it answered.
pub(super) fn open(
    addr: &redis::ConnectionAddr,
    credentials: Option<(Option<String>, String)>,
) -> Result<(Box<dyn Read + Send>, FullResync), String> {
    let stream: Box<dyn Connection> = match addr {
        redis::ConnectionAddr::Tcp(host, port) => {
            let stream = std::net::TcpStream::connect((host.as_str(), *port))
                .map_err(|error| format!("cannot connect to {host}:{port}: {error}"))?;
            stream
                .set_read_timeout(Some(SILENCE))
                .map_err(|error| error.to_string())?;
            Box::new(stream)
        }
        redis::ConnectionAddr::Unix(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)
                .map_err(|error| format!("cannot connect to {}: {error}", path.display()))?;
            stream
                .set_read_timeout(Some(SILENCE))
                .map_err(|error| error.to_string())?;
            Box::new(stream)
        }
        _ => {
            return Err("the replication stream is read over TCP or a Unix socket, not TLS".into())
        }
    };
    let mut stream = BufReader::new(stream);
    if let Some((user, password)) = credentials {
        let mut words = vec!["AUTH".to_string()];
        words.extend(user);
        words.push(password);
        command(&mut stream, &words)?;
        expect_ok(&mut stream, "AUTH")?;
    }
    command(&mut stream, &["REPLCONF", "rdb-only", "1"])?;
    let rdb_only = reply(&mut stream)?.starts_with('+');
    command(&mut stream, &["REPLCONF", "capa", "eof"])?;
    expect_ok(&mut stream, "REPLCONF capa eof")?;
    command(&mut stream, &["PSYNC", "?", "-1"])?;
    let answer = reply(&mut stream)?;
    let mut words = answer.split_whitespace();
    let (Some("+FULLRESYNC"), Some(replid), Some(offset)) =
        (words.next(), words.next(), words.next())
    else {
        return Err(format!("PSYNC was answered {answer:?}, not +FULLRESYNC"));
    };
    let resync = |diskless| FullResync {
        replid: replid.to_string(),
        offset: offset.parse().unwrap_or(0),
        rdb_only,
        diskless,
    };
    let header = reply(&mut stream)?;
    let Some(size) = header.strip_prefix('$') else {
        return Err(format!("the RDB payload starts with {header:?}, not $"));
    };
    if let Some(mark) = size.strip_prefix("EOF:") {
        let mark = mark.as_bytes().to_vec();
        if mark.len() != 40 {
            return Err(format!("the end mark {mark:?} is not 40 bytes"));
        }
        let reader = UntilMark {
            inner: stream,
            mark,
            held: Vec::new(),
            done: false,
        };
        return Ok((Box::new(reader), resync(true)));
    }
    let length: u64 = size
        .parse()
        .map_err(|_| format!("the RDB payload's length {size:?} is not a number"))?;
    Ok((Box::new(stream.take(length)), resync(false)))
}

fn command(
    stream: &mut BufReader<Box<dyn Connection>>,
    words: &[impl AsRef<str>],
) -> Result<(), String> {
    let mut bytes = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        let word = word.as_ref();
        bytes.extend_from_slice(format!("${}\r\n", word.len()).as_bytes());
        bytes.extend_from_slice(word.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    stream
        .get_mut()
        .write_all(&bytes)
        .map_err(|error| format!("sending to the server failed: {error}"))
}

/// The next reply line, skipping the newlines the server sends to keep the
/// link alive.
fn reply(stream: &mut BufReader<Box<dyn Connection>>) -> Result<String, String> {
    loop {
        let mut line = String::new();
        let read = stream
            .read_line(&mut line)
            .map_err(|error| format!("reading the server's answer failed: {error}"))?;
        if read == 0 {
            return Err("the server closed the connection".into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() {
            return Ok(line.to_string());
        }
    }
}

fn expect_ok(stream: &mut BufReader<Box<dyn Connection>>, what: &str) -> Result<(), String> {
    let answer = reply(stream)?;
    if answer.starts_with('+') {
        Ok(())
    } else {
        Err(format!("{what} failed: {}", answer.trim_start_matches('-')))
    }
}

/// Reads until the 40-byte end mark, which it does not hand out.
struct UntilMark<R> {
    inner: R,
    mark: Vec<u8>,
    held: Vec<u8>,
    done: bool,
}

impl<R: Read> Read for UntilMark<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        let mut block = vec![0u8; buf.len().max(1)];
        loop {
            let found = self
                .held
                .windows(self.mark.len())
                .position(|window| window == self.mark.as_slice());
            // Bytes before the mark, or that cannot be the start of one.
            let ready = match found {
                Some(0) => {
                    self.done = true;
                    return Ok(0);
                }
                Some(at) => at,
                None => self.held.len().saturating_sub(self.mark.len() - 1),
            };
            if ready > 0 {
                let count = ready.min(buf.len());
                buf[..count].copy_from_slice(&self.held[..count]);
                self.held.drain(..count);
                return Ok(count);
            }
            let read = self.inner.read(&mut block)?;
            if read == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the replication stream ended before the RDB's end mark",
                ));
            }
            self.held.extend_from_slice(&block[..read]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_mark_ends_the_payload_however_the_bytes_arrive() {
        let mark = b"0123456789012345678901234567890123456789".to_vec();
        let payload: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = payload.clone();
        wire.extend_from_slice(&mark);
        wire.extend_from_slice(b"after");
        for step in [1, 7, 40, 41, 4096] {
            struct Trickle(Vec<u8>, usize, usize);
            impl Read for Trickle {
                fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                    let count = self.2.min(buf.len()).min(self.0.len() - self.1);
                    buf[..count].copy_from_slice(&self.0[self.1..self.1 + count]);
                    self.1 += count;
                    Ok(count)
                }
            }
            let mut reader = UntilMark {
                inner: Trickle(wire.clone(), 0, step),
                mark: mark.clone(),
                held: Vec::new(),
                done: false,
            };
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert!(out == payload, "step {step}: {} bytes", out.len());
        }
        let mut cut = UntilMark {
            inner: &payload[..],
            mark,
            held: Vec::new(),
            done: false,
        };
        let mut out = Vec::new();
        assert!(cut.read_to_end(&mut out).is_err());
    }
}
