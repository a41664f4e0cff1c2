//! A REST request's body: at most [`BODY_LIMIT`] bytes, and decompressed when it comes
//! gzip- or deflate-encoded, as Triton's HTTP server takes it (`tritonclient.http`'s
//! `request_compression_algorithm`). Answers go uncompressed, which every client reads.

use std::io::Read;

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::http::{StatusCode, header};

use crate::rest::RestError;

/// Largest request body, before and after decompression: the gRPC port's message limit
/// (axum's default, 2 MB, would refuse batches the gRPC port takes).
pub(crate) const BODY_LIMIT: usize = modelplane_service::MAX_MESSAGE_BYTES;

/// A request's body, decoded; a larger one, one that breaks off or one that does not
/// decompress is refused with a KServe error body like every other refusal.
pub(crate) struct RequestBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for RequestBody {
    type Rejection = RestError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, RestError> {
        let encoding = request
            .headers()
            .get(header::CONTENT_ENCODING)
            .map(|value| value.to_str().unwrap_or("(not text)").trim().to_ascii_lowercase());
        let body = match Bytes::from_request(request, state).await {
            Ok(body) => body,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large("")),
            Err(rejection) => return Err(RestError(rejection.status(), rejection.body_text())),
        };
        let coding = match encoding.as_deref() {
            None | Some("" | "identity") => return Ok(Self(body)),
            Some("gzip" | "x-gzip") => Coding::Gzip,
            Some("deflate") => Coding::Deflate,
            Some(other) => {
                return Err(RestError(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Encoding {other:?} is not supported; send gzip, deflate or an uncompressed body"),
                ));
            }
        };
        // Up to 64 MiB of inflating is CPU work: off the async runtime.
        tokio::task::spawn_blocking(move || coding.decode(&body))
            .await
            .map_err(|err| RestError(StatusCode::INTERNAL_SERVER_ERROR, format!("decompressing failed: {err}")))?
            .map(Self)
    }
}

fn too_large(how: &str) -> RestError {
    RestError(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the request body{how} is larger than the {} MiB the router accepts; send the batch in smaller requests",
            BODY_LIMIT >> 20
        ),
    )
}

/// A compressed body's coding.
#[derive(Clone, Copy, Debug)]
enum Coding {
    Gzip,
    /// HTTP's "deflate" is a zlib stream; some clients send bare deflate, taken as well.
    Deflate,
}

impl Coding {
    fn decode(self, body: &[u8]) -> Result<Bytes, RestError> {
        let inflate = |reader: &mut dyn Read| {
            let mut decoded = Vec::new();
            // One byte past the limit tells a body at the limit from a larger one.
            reader.take(BODY_LIMIT as u64 + 1).read_to_end(&mut decoded).map(|_| decoded)
        };
        let decoded = match self {
            Coding::Gzip => inflate(&mut flate2::read::GzDecoder::new(body)),
            Coding::Deflate => inflate(&mut flate2::read::ZlibDecoder::new(body))
                .or_else(|_| inflate(&mut flate2::read::DeflateDecoder::new(body))),
        }
        .map_err(|err| RestError::bad_request(format!("the {self:?} request body does not decompress: {err}")))?;
        if decoded.len() > BODY_LIMIT {
            return Err(too_large(", decompressed,"));
        }
        Ok(Bytes::from(decoded))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn compressed(coding: Coding, data: &[u8]) -> Vec<u8> {
        fn finish<W: Write>(mut encoder: W, data: &[u8]) -> W {
            encoder.write_all(data).expect("compresses");
            encoder
        }
        let level = flate2::Compression::fast();
        match coding {
            Coding::Gzip => finish(flate2::write::GzEncoder::new(Vec::new(), level), data).finish(),
            Coding::Deflate => finish(flate2::write::ZlibEncoder::new(Vec::new(), level), data).finish(),
        }
        .expect("compresses")
    }

    #[test]
    fn gzip_zlib_and_bare_deflate_bodies_decode() {
        let body = br#"{"inputs": []}"#;
        for coding in [Coding::Gzip, Coding::Deflate] {
            assert_eq!(coding.decode(&compressed(coding, body)).ok().as_deref(), Some(&body[..]), "{coding:?}");
        }
        let mut bare = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        bare.write_all(body).expect("compresses");
        let bare = bare.finish().expect("compresses");
        assert_eq!(Coding::Deflate.decode(&bare).ok().as_deref(), Some(&body[..]));
    }

    #[test]
    fn a_body_that_is_not_compressed_or_inflates_past_the_limit_is_refused() {
        let err = Coding::Gzip.decode(b"{\"inputs\": []}").expect_err("not gzip");
        assert_eq!(err.0, StatusCode::BAD_REQUEST);
        assert!(err.1.starts_with("the Gzip request body does not decompress"), "{}", err.1);
        let bomb = compressed(Coding::Gzip, &vec![0; BODY_LIMIT + 1]);
        assert!(bomb.len() < 1 << 20, "zeros compress well");
        let err = Coding::Gzip.decode(&bomb).expect_err("too large");
        assert_eq!(err.0, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(err.1.contains("body, decompressed, is larger than the 64 MiB"), "{}", err.1);
        let at_limit = compressed(Coding::Gzip, &vec![0; BODY_LIMIT]);
        assert_eq!(Coding::Gzip.decode(&at_limit).map(|b| b.len()).ok(), Some(BODY_LIMIT));
    }
}
