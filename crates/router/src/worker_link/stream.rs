//! Inference over open ModelStreamInfer streams to a worker, one request in flight on
//! each, kept in a pool for the next request.
//!
//! Why: a unary call opens an HTTP/2 stream, encodes and decodes headers and trailers,
//! and the worker's server spawns a task for it; a message on an open stream is one
//! DATA frame each way. Measured against the echo server, a message on a stream took
//! 75–83 µs p50 at concurrency 1 where a unary call took 180–211 µs (docs/benchmarks.md).
//!
//! What a unary call carries in headers travels in the message's parameters: the
//! remaining time as Triton's `timeout` (microseconds) and the trace context
//! (`traceparent`). A worker's error comes back as `error_message` "CODE: message" and
//! is turned back into that status, so UNAVAILABLE is still retried elsewhere. A call
//! dropped mid-flight (the caller cancelled or timed out) drops its stream, which resets
//! it, and the worker stops working on it; such a stream is never reused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Buf, Bytes};
use h2::client::ResponseFuture;
use h2::{RecvStream, SendStream};

use modelplane_proto::inference as pb;
use tonic::Status;

use super::{Answer, WorkerLink, check_head, decode, decode_message, encode, method};

/// Streams kept open per worker beyond those in use; more are closed when returned.
/// Our servers advertise no HTTP/2 stream limit (tonic sets none); one that did would
/// count idle streams against it, alongside unary calls to the worker.
const MAX_IDLE_STREAMS: usize = 64;

/// The idle streams of one worker link.
#[derive(Default)]
pub(super) struct IdleStreams(Mutex<Vec<InferStream>>);

impl IdleStreams {
    /// An idle stream on a live connection, if any.
    fn take(&self) -> Option<InferStream> {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(stream) = idle.pop() {
            if stream.alive.load(Ordering::Acquire) {
                return Some(stream);
            }
        }
        None
    }

    fn put(&self, stream: InferStream) {
        let mut idle = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_STREAMS {
            idle.push(stream);
        }
    }

    /// Closes every idle stream: one ended under us, and the worker ends all of them
    /// together when it drains.
    fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// One open ModelStreamInfer call.
struct InferStream {
    send: SendStream<Bytes>,
    /// The answer's head, until it arrived; then its body.
    response: Option<ResponseFuture>,
    body: Option<RecvStream>,
    /// Whether the connection the stream belongs to is still up.
    alive: Arc<AtomicBool>,
}

/// A worker's ModelStreamInferResponse with its `infer_response` left encoded: the
/// router hands a gRPC client the worker's bytes as they came (the same wire format:
/// a message field is length-delimited bytes), without decoding and encoding them again.
#[derive(Clone, PartialEq, prost::Message)]
struct EncodedStreamAnswer {
    #[prost(string, tag = "1")]
    error_message: String,
    #[prost(bytes = "bytes", optional, tag = "2")]
    infer_response: Option<Bytes>,
}

/// Why a message got no answer on its stream.
struct Failure {
    status: Status,
    /// Only this stream ended (the worker closed it, or reset it); the connection is
    /// fine and a new stream may succeed.
    stream_only: bool,
}

/// A status the worker sent, or one about its answer: another stream would fare no better.
impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Self { status, stream_only: false }
    }
}

impl WorkerLink {
    /// Forwards one inference request with the caller's deadline and trace context, on
    /// an open stream when the worker is across the network.
    ///
    /// As [`WorkerLink::unary`]: a worker's error is its status, and a request that got
    /// no answer is UNAVAILABLE with the transport error as its source.
    pub async fn infer(
        &self,
        request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<pb::ModelInferResponse, Status> {
        let answer = self.infer_encoded(request, deadline).await?;
        decode_message(answer, &self.addr)
    }

    /// [`WorkerLink::infer`] returning the worker's ModelInferResponse as protobuf bytes.
    pub async fn infer_encoded(
        &self,
        mut request: pb::ModelInferRequest,
        deadline: Option<Instant>,
    ) -> Result<Bytes, Status> {
        let remaining = match deadline {
            None => None,
            Some(deadline) => match deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero()) {
                Some(left) => Some(left),
                None => {
                    return Err(Status::deadline_exceeded("the deadline passed before the request reached a worker"));
                }
            },
        };
        if self.in_process.get(&self.addr).is_some() {
            let timeout = remaining.map(modelplane_service::grpc_timeout_value);
            return self.unary_encoded(method::MODEL_INFER, &request, timeout.as_ref()).await;
        }
        if let Some(remaining) = remaining {
            modelplane_service::set_timeout_parameter(&mut request.parameters, remaining);
        }
        modelplane_service::inject_context_parameters(&mut request.parameters);
        let frame = encode(&request)?;

        let mut reused = self.idle_streams.take();
        loop {
            let was_reused = reused.is_some();
            let stream = match reused.take() {
                Some(stream) => stream,
                None => self.open_stream().await?,
            };
            match stream.exchange(frame.clone(), self).await {
                Ok((answer, stream)) => {
                    self.idle_streams.put(stream);
                    return into_result(answer, &self.addr);
                }
                // The worker closed a stream while it sat idle (it does when it drains):
                // one fresh stream tells whether it still takes requests.
                Err(failure) if was_reused && failure.stream_only => self.idle_streams.clear(),
                Err(failure) => return Err(failure.status),
            }
        }
    }

    async fn open_stream(&self) -> Result<InferStream, Status> {
        let headers = self.call_headers(3);
        let ((response, send), alive) = self.start_call(method::MODEL_STREAM_INFER, headers).await?;
        Ok(InferStream { send, response: Some(response), body: None, alive })
    }
}

impl InferStream {
    /// Sends one request frame and reads its answer; hands the stream back for reuse
    /// when the exchange left it clean.
    async fn exchange(
        mut self,
        frame: Bytes,
        link: &WorkerLink,
    ) -> Result<(EncodedStreamAnswer, InferStream), Failure> {
        let transport = |err: h2::Error| Failure {
            stream_only: err.is_reset() && !err.is_go_away(),
            status: link.transport_error(err),
        };
        self.send.send_data(frame, false).map_err(transport)?;
        if let Some(response) = self.response.take() {
            let (parts, body) = response.await.map_err(transport)?.into_parts();
            check_head(&parts)?;
            self.body = Some(body);
        }
        let Some(body) = self.body.as_mut() else {
            return Err(Status::internal(format!("stream to worker {} has no answer body", link.addr)).into());
        };
        let mut answer = Answer::new(&link.addr);
        let mut expected = None;
        loop {
            if let Some(expected) = expected
                && answer.received >= expected
            {
                if answer.received > expected {
                    return Err(Status::internal(format!("worker {} answered one request twice", link.addr)).into());
                }
                break;
            }
            match body.data().await {
                Some(Ok(chunk)) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    answer.push(chunk)?;
                    if expected.is_none() {
                        expected = message_len(&answer.chunks).map(|len| len + 5);
                    }
                }
                Some(Err(err)) => return Err(transport(err)),
                None => return Err(ended(body, link).await),
            }
        }
        let message = decode(std::mem::take(&mut answer.chunks), &link.addr)?;
        Ok((message, self))
    }
}

/// Why a stream ended without the answer: the worker's status when it sent one, else
/// UNAVAILABLE with a source, as for a broken connection.
async fn ended(body: &mut RecvStream, link: &WorkerLink) -> Failure {
    match body.trailers().await {
        Ok(trailers) => match trailers.as_ref().and_then(Status::from_header_map) {
            Some(status) if status.code() != tonic::Code::Ok => status.into(),
            _ => {
                let detail = format!("worker {} ended the stream before answering", link.addr);
                let mut status = Status::unavailable(detail.clone());
                status.set_source(Arc::new(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, detail)));
                Failure { status, stream_only: true }
            }
        },
        Err(err) => Failure { stream_only: err.is_reset() && !err.is_go_away(), status: link.transport_error(err) },
    }
}

/// The length a gRPC frame's 5-byte prefix announces, once those bytes arrived.
fn message_len(chunks: &[Bytes]) -> Option<usize> {
    let mut prefix = [0u8; 5];
    let mut filled = 0;
    for chunk in chunks {
        let take = (5 - filled).min(chunk.len());
        prefix[filled..filled + take].copy_from_slice(&chunk[..take]);
        filled += take;
        if filled == 5 {
            return Some((&prefix[1..]).get_u32() as usize);
        }
    }
    None
}

/// The answer to one request: its response, or the status its `error_message` names.
fn into_result(answer: EncodedStreamAnswer, addr: &str) -> Result<Bytes, Status> {
    if !answer.error_message.is_empty() {
        return Err(modelplane_kserve::grpc::status_from_error_message(&answer.error_message));
    }
    answer
        .infer_response
        .ok_or_else(|| Status::internal(format!("worker {addr} answered with neither a response nor an error")))
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn response() -> pb::ModelInferResponse {
        pb::ModelInferResponse {
            model_name: "m".into(),
            model_version: "3".into(),
            id: "req-1".into(),
            raw_output_contents: vec![Bytes::from_static(&[0, 0, 128, 63])],
            ..Default::default()
        }
    }

    #[test]
    fn an_encoded_answer_reads_a_workers_stream_response_and_keeps_its_bytes() {
        let sent = pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(response()) };
        let answer = EncodedStreamAnswer::decode(sent.encode_to_vec().as_slice()).expect("same wire format");
        let bytes = into_result(answer, "w").expect("a response");
        assert_eq!(bytes, response().encode_to_vec(), "the response's own encoding, untouched");
        assert_eq!(pb::ModelInferResponse::decode(bytes).expect("decodes"), response());

        let empty =
            pb::ModelStreamInferResponse { error_message: String::new(), infer_response: Some(Default::default()) };
        let answer = EncodedStreamAnswer::decode(empty.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(into_result(answer, "w").expect("an empty response is a response"), Bytes::new());
    }

    #[test]
    fn an_encoded_answer_keeps_errors_and_refuses_an_answer_with_neither() {
        let failed =
            pb::ModelStreamInferResponse { error_message: "NOT_FOUND: no model m".into(), infer_response: None };
        let answer = EncodedStreamAnswer::decode(failed.encode_to_vec().as_slice()).expect("decodes");
        let status = into_result(answer, "w").expect_err("an error");
        assert_eq!((status.code(), status.message()), (tonic::Code::NotFound, "no model m"));

        let neither = pb::ModelStreamInferResponse::default();
        let answer = EncodedStreamAnswer::decode(neither.encode_to_vec().as_slice()).expect("decodes");
        let status = into_result(answer, "w").expect_err("neither");
        assert_eq!(status.code(), tonic::Code::Internal);
    }
}
