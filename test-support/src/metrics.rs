//! Reading a service's Prometheus endpoint, as an operator's scraper does.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body of `GET /metrics` on `port` of this host (plain HTTP/1.0, so the
/// server closes the connection after answering); an error names what
/// failed: the connection, the status or the content type.
pub async fn scrape_metrics(port: u16) -> Result<String, String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect to the metrics endpoint: {e}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .map_err(|e| format!("send the request: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .map_err(|e| format!("read the response: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    if !head.starts_with("HTTP/1.0 200") {
        return Err(format!("metrics answer: {head}"));
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain")
    {
        return Err(format!("metrics content type: {head}"));
    }
    Ok(body.to_owned())
}
