//! Asking the public role (`kxca serve`) what a relying party sees: an
//! OCSP answer for a serial, the issuing CA's CRL. Plain HTTP/1.1 over one
//! hyper connection per question, bounded in time and size, so a public
//! role that hangs or floods never holds a console page. The OCSP request
//! and every check on the answers are kxca-ca's (`ocsp::probe`).

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use kxca_ca::ocsp::probe::{self, Answer, CrlFacts, ProbeFailure};
use kxca_ca::Authority;

/// The whole exchange (connect, send, read) must end within this.
const TIMEOUT: Duration = Duration::from_secs(3);
/// An OCSP answer from kxca is under 2 KiB; anything near this is not one.
const OCSP_LIMIT: usize = 64 * 1024;
/// A CRL of 100,000 entries is about 3.5 MiB.
const CRL_LIMIT: usize = 8 * 1024 * 1024;

/// Where the public role answers: `http://host:port` and a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRole {
    authority: String,
    prefix: String,
}

/// Why there is no verified answer.
#[derive(Debug)]
pub enum Failure {
    /// No connection, no answer in time, or not HTTP (the detail is for logs).
    Unreachable(String),
    /// An HTTP status other than 200.
    Status(u16),
    /// The answer was larger than any genuine one.
    TooLarge,
    /// An answer arrived and failed a relying party's checks.
    Invalid(ProbeFailure),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(m) => write!(f, "public role unreachable: {m}"),
            Failure::Status(s) => write!(f, "public role answered HTTP {s}"),
            Failure::TooLarge => write!(f, "public role's answer too large"),
            Failure::Invalid(p) => write!(f, "public role's answer rejected: {p}"),
        }
    }
}

impl PublicRole {
    /// Parses `http://host:port[/prefix]`; the error names what is wrong.
    pub fn parse(url: &str) -> Result<PublicRole, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("{url:?}: only http:// is supported (the console asks the public role as a relying party does, over plain HTTP)")
        })?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains(['@', ' ', '?', '#'])
            || path.contains(['?', '#', ' '])
        {
            return Err(format!("{url:?}: not an http://host[:port][/path] URL"));
        }
        let authority = if authority.rsplit_once(':').is_some_and(|(_, p)| {
            !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !p.contains(']')
        }) {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(PublicRole {
            authority,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// `http://host:port/prefix`, for the page and the logs.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.authority, self.prefix)
    }

    /// One request; the body if the status is 200 and it fits in `limit`.
    async fn exchange(
        &self,
        path: &str,
        post: Option<(&'static str, Vec<u8>)>,
        limit: usize,
    ) -> Result<Bytes, Failure> {
        let unreachable = |m: String| Failure::Unreachable(m);
        let work = async {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .map_err(|e| unreachable(format!("connect {}: {e}", self.authority)))?;
            let _ = stream.set_nodelay(true);
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| unreachable(format!("handshake: {e}")))?;
            // The connection is driven beside the request and dropped with
            // it: one question per connection.
            let driver = tokio::spawn(conn);
            let mut req = hyper::Request::builder()
                .uri(format!("{}{path}", self.prefix))
                .header(hyper::header::HOST, &self.authority)
                .header(hyper::header::CONNECTION, "close");
            let body = match post {
                Some((content_type, body)) => {
                    req = req
                        .method(hyper::Method::POST)
                        .header(hyper::header::CONTENT_TYPE, content_type);
                    body
                }
                None => Vec::new(),
            };
            let req = req
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| unreachable(format!("request: {e}")))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| unreachable(format!("request: {e}")));
            let out = match resp {
                Ok(resp) if resp.status() != hyper::StatusCode::OK => {
                    Err(Failure::Status(resp.status().as_u16()))
                }
                Ok(resp) => match Limited::new(resp.into_body(), limit).collect().await {
                    Ok(b) => Ok(b.to_bytes()),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Failure::TooLarge),
                    Err(e) => Err(unreachable(format!("reading the answer: {e}"))),
                },
                Err(e) => Err(e),
            };
            driver.abort();
            out
        };
        tokio::time::timeout(TIMEOUT, work)
            .await
            .unwrap_or_else(|_| Err(unreachable(format!("no answer within {TIMEOUT:?}"))))
    }

    /// The public role's OCSP answer for `serial` (bytes) of `issuer`,
    /// verified as a relying party would at `now`.
    pub async fn ocsp(
        &self,
        issuer: &Authority,
        serial: &[u8],
        now: i64,
    ) -> Result<Answer, Failure> {
        let probe = probe::request(issuer, serial)
            .map_err(|e| Failure::Invalid(ProbeFailure::Malformed(e.to_string())))?;
        let body = self
            .exchange(
                "/",
                Some(("application/ocsp-request", probe.der.clone())),
                OCSP_LIMIT,
            )
            .await?;
        probe::check_answer(&body, issuer, &probe, now).map_err(Failure::Invalid)
    }

    /// The CRL the public role serves for `issuer` (at `/crl/<name>.crl`,
    /// where `kxca serve` publishes it), verified at `now`.
    pub async fn crl(&self, issuer: &Authority, now: i64) -> Result<CrlFacts, Failure> {
        let body = self
            .exchange(&format!("/crl/{}.crl", issuer.name), None, CRL_LIMIT)
            .await?;
        probe::check_crl(&body, issuer, now).map_err(Failure::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_with_their_port_and_prefix() {
        let p = PublicRole::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(p.url(), "http://127.0.0.1:8080");
        let p = PublicRole::parse("http://kx-ca.example.jp/ocsp/").unwrap();
        assert_eq!(p.url(), "http://kx-ca.example.jp:80/ocsp");
        let p = PublicRole::parse("http://[::1]:9000/").unwrap();
        assert_eq!(p.url(), "http://[::1]:9000");
        for bad in [
            "https://x",
            "ftp://x",
            "http://",
            "http://a b",
            "http://u@h/",
        ] {
            assert!(PublicRole::parse(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_silent_public_role_is_unreachable_within_the_timeout() {
        // A listener that accepts and never answers.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let p = PublicRole::parse(&format!("http://{addr}")).unwrap();
        let started = std::time::Instant::now();
        let got = p.exchange("/healthz", None, 16).await;
        assert!(matches!(got, Err(Failure::Unreachable(_))), "{got:?}");
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
    }

    #[tokio::test]
    async fn an_oversized_answer_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let body = vec![b'x'; 100];
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&body).await;
        });
        let p = PublicRole::parse(&format!("http://{addr}")).unwrap();
        let got = p.exchange("/x", None, 16).await;
        assert!(matches!(got, Err(Failure::TooLarge)), "{got:?}");
    }
}
