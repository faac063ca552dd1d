//! Just enough HTTP/1.0 for the network tests and the demo, on the host's loopback only: a
//! GET through a port forwarded into the guest, and a one-page server a guest reaches
//! through its gateway. Both are bounded in time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

/// GET `path` from 127.0.0.1:`port`, retried until `deadline` passes (a server in the
/// guest may still be starting: QEMU's user networking accepts a forwarded connection and
/// closes it while nothing listens in the guest). Answers the whole response.
pub fn get_from_loopback(port: u16, path: &str, deadline: Duration) -> Result<String> {
    let started = Instant::now();
    let mut last = String::from("no attempt");
    while started.elapsed() < deadline {
        match get_once(port, path) {
            Ok(response) if response.starts_with("HTTP/") => return Ok(response),
            Ok(response) => last = format!("answer {response:?}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!("GET http://127.0.0.1:{port}{path} failed for {deadline:?}: {last}")
}

fn get_once(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The body of an HTTP response (after the blank line).
pub fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map_or(response, |(_, body)| body)
}

/// Serves `body` on a free port of 127.0.0.1 to `requests` requests, or for 5 minutes at
/// most; answers the port and the server thread, which returns how many it served.
pub fn serve_on_loopback(body: &'static str, requests: usize) -> Result<(u16, JoinHandle<usize>)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let port = listener.local_addr()?.port();
    listener.set_nonblocking(true)?;
    let server = std::thread::spawn(move || {
        let mut served = 0;
        let until = Instant::now() + Duration::from_secs(300);
        while served < requests && Instant::now() < until {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            if answer(&stream, body).is_ok() {
                served += 1;
            }
        }
        served
    });
    Ok((port, server))
}

fn answer(stream: &TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // The request line and headers, up to the blank line.
    while reader.read_line(&mut line)? > 0 && line != "\r\n" {
        line.clear();
    }
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_answers_the_client() {
        let (port, server) = serve_on_loopback("hi\n", 1).unwrap();
        let response = get_from_loopback(port, "/x", Duration::from_secs(10)).unwrap();
        assert!(response.starts_with("HTTP/1.0 200 OK"), "{response}");
        assert_eq!(body(&response), "hi\n");
        assert_eq!(server.join().unwrap(), 1);
    }

    #[test]
    fn nothing_listening_fails_within_the_deadline() {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let started = Instant::now();
        assert!(get_from_loopback(port, "/", Duration::from_millis(300)).is_err());
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
