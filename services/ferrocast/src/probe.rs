//! `ferrocast probe URL`: one plain-HTTP GET, for container health checks
//! (the runtime image has no curl). Exit status 0 on a 2xx answer; the
//! body goes to stdout, and on any other answer or failure the reason goes
//! to stderr with a non-zero status.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most of an answer read: `/readyz` and `/healthz` are one line.
const MAX_ANSWER: u64 = 64 * 1024;

/// Where to connect and what to ask for, from `http://HOST:PORT/PATH`.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    authority: String,
    path: String,
}

fn target(url: &str) -> anyhow::Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
        bail!("{url}: not an http://HOST:PORT/PATH URL");
    }
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Ok(Target {
        authority,
        path: path.to_owned(),
    })
}

/// The status code and body of an HTTP/1.x answer.
fn answer(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|line| line.get(2..5))
        .and_then(|code| code.parse().ok())
        .context("the answer is not HTTP/1.x")?;
    Ok((status, body.to_owned()))
}

/// GETs `url` within `timeout`; `Ok` with the body on a 2xx answer.
pub async fn probe(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let target = target(url)?;
    let exchange = async {
        let mut stream = TcpStream::connect(&target.authority)
            .await
            .with_context(|| format!("connecting to {}", target.authority))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nUser-Agent: ferrocast-probe\r\n\r\n",
            target.path, target.authority
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut raw).await?;
        answer(&raw)
    };
    let (status, body) = tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{url}: no answer within {} ms", timeout.as_millis()))??;
    if !(200..300).contains(&status) {
        bail!("{url}: {status} {}", body.trim_end());
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_name_an_authority_and_a_path() {
        assert_eq!(
            target("http://127.0.0.1:8080/readyz").unwrap(),
            Target {
                authority: "127.0.0.1:8080".into(),
                path: "/readyz".into()
            }
        );
        assert_eq!(target("http://edge").unwrap().authority, "edge:80");
        assert_eq!(target("http://[::1]:9/x").unwrap().authority, "[::1]:9");
        assert_eq!(target("http://[::1]/x").unwrap().authority, "[::1]:80");
        for bad in [
            "https://x/",
            "x:80/",
            "http:///readyz",
            "http://a b/",
            "http://u@h/",
        ] {
            assert!(target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_give_their_status_and_body() {
        assert_eq!(
            answer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\n\r\nno\n").unwrap(),
            (503, "no\n".into())
        );
        assert!(answer(b"SSH-2.0-OpenSSH\r\n").is_err());
    }

    #[tokio::test]
    async fn a_503_is_a_failure_with_the_reason() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for reply in [
                "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nready\n",
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\n\r\nnot ready: draining\n",
            ] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = [0u8; 1024];
                let n = socket.read(&mut request).await.unwrap();
                assert!(request[..n].starts_with(b"GET /readyz HTTP/1.1\r\n"));
                socket.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let url = format!("http://{addr}/readyz");
        let wait = Duration::from_secs(5);
        assert_eq!(probe(&url, wait).await.unwrap(), "ready\n");
        let err = probe(&url, wait).await.unwrap_err().to_string();
        assert!(err.ends_with("503 not ready: draining"), "{err}");
        server.await.unwrap();
    }
}
