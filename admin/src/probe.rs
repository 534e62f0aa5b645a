//! A health probe for containers: one plain HTTP GET, success on a 2xx status. The image needs
//! no curl for its `HEALTHCHECK`, and the probe speaks only to the address it is given.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}: only http://host:port/path URLs are probed")]
    Url(String),
    #[error("{url}: {source}")]
    Io { url: String, source: std::io::Error },
    #[error("{url}: no HTTP status line in the answer")]
    NoStatus { url: String },
    #[error("{url}: status {status}")]
    Status { url: String, status: u16 },
}

/// Sends `GET` to `url` (`http://host:port/path`) and returns its status when it is 2xx.
pub fn probe(url: &str, timeout: Duration) -> Result<u16, ProbeError> {
    let (authority, path) = split(url).ok_or_else(|| ProbeError::Url(url.to_owned()))?;
    let io = |source| ProbeError::Io {
        url: url.to_owned(),
        source,
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in authority.to_socket_addrs().map_err(io)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut stream = stream.ok_or_else(|| io(last))?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    // The status line is all we need: read until its end, or a few hundred bytes.
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        let n = stream.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = status(&head).ok_or_else(|| ProbeError::NoStatus {
        url: url.to_owned(),
    })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            status,
        })
    }
}

/// `http://127.0.0.1:8080/health` → (`127.0.0.1:8080`, `/health`).
fn split(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    // A port is required: the services have no conventional one.
    let (_, port) = authority.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    Some((authority, path))
}

/// The status code of `HTTP/1.1 200 OK`.
fn status(head: &[u8]) -> Option<u16> {
    let line = head.split(|b| *b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::net::TcpListener;

    /// A server answering one connection with `answer`; returns its URL base.
    fn answering(answer: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(answer.as_bytes());
        });
        format!("http://{addr}")
    }

    #[test]
    fn a_2xx_answer_is_healthy_and_anything_else_is_not() {
        let up = answering("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        assert_eq!(
            probe(&format!("{up}/health"), Duration::from_secs(2)).unwrap(),
            200
        );
        let down = answering("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n");
        let err = probe(&format!("{down}/ready"), Duration::from_secs(2)).unwrap_err();
        assert!(
            matches!(err, ProbeError::Status { status: 503, .. }),
            "{err}"
        );
        let garbage = answering("SSH-2.0-OpenSSH\r\n");
        let err = probe(&garbage, Duration::from_secs(2)).unwrap_err();
        assert!(matches!(err, ProbeError::NoStatus { .. }), "{err}");
    }

    #[test]
    fn a_closed_port_or_another_scheme_is_not_healthy() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/health");
        assert!(matches!(
            probe(&url, Duration::from_secs(1)),
            Err(ProbeError::Io { .. })
        ));
        for url in ["https://127.0.0.1:8080/health", "http://localhost/health"] {
            assert!(matches!(
                probe(url, Duration::from_secs(1)),
                Err(ProbeError::Url(_))
            ));
        }
    }

    #[test]
    fn the_url_splits_into_address_and_path() {
        assert_eq!(
            split("http://127.0.0.1:8080/ready"),
            Some(("127.0.0.1:8080", "/ready"))
        );
        assert_eq!(split("http://[::1]:8080"), Some(("[::1]:8080", "/")));
    }
}
