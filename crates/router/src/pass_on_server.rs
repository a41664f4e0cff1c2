//! The router's `inference.GRPCInferenceService` server: tonic's generated server for
//! every method but ModelInfer, which answers with the worker's response bytes as they
//! arrived instead of decoding them into a message only to encode it again (8k of the
//! 107k instructions the router spent per request, docs/benchmarks.md).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use futures::future::BoxFuture;
use modelplane_proto::inference as pb;
use modelplane_proto::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::RouterService;
use crate::worker_link::method;

/// The inference service as the router serves it over gRPC.
#[derive(Clone)]
pub(crate) struct InferenceServer {
    typed: GrpcInferenceServiceServer<RouterService>,
    router: Arc<RouterService>,
}

impl InferenceServer {
    pub(crate) fn new(router: RouterService) -> Self {
        let typed = modelplane_service::ACCEPTED_COMPRESSIONS.into_iter().fold(
            GrpcInferenceServiceServer::new(router.clone())
                .max_decoding_message_size(modelplane_service::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(modelplane_service::MAX_MESSAGE_BYTES),
            |server, encoding| server.accept_compressed(encoding),
        );
        Self { typed, router: Arc::new(router) }
    }
}

impl NamedService for InferenceServer {
    const NAME: &'static str = <GrpcInferenceServiceServer<RouterService> as NamedService>::NAME;
}

impl tower::Service<http::Request<tonic::body::Body>> for InferenceServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != method::MODEL_INFER {
            return tower::Service::call(&mut self.typed, request);
        }
        let router = self.router.clone();
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(PassOnCodec).apply_max_message_size_config(
                Some(modelplane_service::MAX_MESSAGE_BYTES),
                Some(modelplane_service::MAX_MESSAGE_BYTES),
            );
            for encoding in modelplane_service::ACCEPTED_COMPRESSIONS {
                grpc = grpc.accept_compressed(encoding);
            }
            Ok(grpc.unary(ModelInfer(router), request).await)
        })
    }
}

struct ModelInfer(Arc<RouterService>);

impl tonic::server::UnaryService<pb::ModelInferRequest> for ModelInfer {
    type Response = Bytes;
    type Future = BoxFuture<'static, Result<Response<Bytes>, Status>>;

    fn call(&mut self, request: Request<pb::ModelInferRequest>) -> Self::Future {
        let router = self.0.clone();
        Box::pin(async move { router.model_infer_as::<Bytes>(request).await })
    }
}

/// Decodes requests as tonic's prost codec does; writes an answer's bytes as they are.
#[derive(Clone, Copy, Default)]
struct PassOnCodec;

impl Codec for PassOnCodec {
    type Encode = Bytes;
    type Decode = pb::ModelInferRequest;
    type Encoder = PassOn;
    type Decoder = tonic_prost::ProstDecoder<pb::ModelInferRequest>;

    fn encoder(&mut self) -> PassOn {
        PassOn
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(Default::default())
    }
}

/// Writes an already encoded ModelInferResponse into the answer's gRPC frame.
#[derive(Clone, Copy, Default)]
struct PassOn;

impl Encoder for PassOn {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put(item);
        Ok(())
    }
}
