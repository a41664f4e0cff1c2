//! Scraping a role's Prometheus endpoint and reading values out of the text format.

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET http://{addr}/metrics` (HTTP/1.1, one connection); the body.
pub async fn scrape(addr: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connect {addr}"))?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    let (head, body) = answer.split_once("\r\n\r\n").context("no end of headers")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("GET /metrics on {addr}: {}", head.lines().next().unwrap_or_default());
    }
    if !head.to_ascii_lowercase().contains("content-type: text/plain") {
        bail!("GET /metrics on {addr} is not text/plain: {head}");
    }
    Ok(body.to_owned())
}

/// The sum of every sample of `name` whose labels include all of `labels`; `None` when
/// there is no such sample.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: Vec<String> = labels.iter().map(|(key, value)| format!("{key}=\"{value}\"")).collect();
    let mut total = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let present: Vec<&str> = split_labels(series_labels);
        if wanted.iter().all(|label| present.contains(&label.as_str())) {
            let value: f64 = value.parse().ok()?;
            *total.get_or_insert(0.0) += value;
        }
    }
    total
}

/// `a="x",b="y,z"` into `a="x"` and `b="y,z"` (commas inside quotes stay).
fn split_labels(labels: &str) -> Vec<&str> {
    let (mut parts, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in labels.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&labels[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < labels.len() {
        parts.push(&labels[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_summed_over_the_labels_not_asked_for() {
        let text = "# TYPE c counter\nc{a=\"1\",b=\"x,y\"} 2\nc{a=\"1\",b=\"z\"} 3\nc{a=\"2\"} 7\ncd 1\nplain 4\n";
        assert_eq!(metric(text, "c", &[("a", "1")]), Some(5.0));
        assert_eq!(metric(text, "c", &[("b", "x,y")]), Some(2.0));
        assert_eq!(metric(text, "c", &[]), Some(12.0));
        assert_eq!(metric(text, "plain", &[]), Some(4.0));
        assert_eq!(metric(text, "c", &[("a", "3")]), None);
        assert_eq!(metric(text, "missing", &[]), None);
    }
}
