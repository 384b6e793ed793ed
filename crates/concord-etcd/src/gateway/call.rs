//! One gateway call: JSON in, the gRPC method called in process, JSON out.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use prost_reflect::MethodDescriptor;
use tokio_stream::StreamExt;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::service::Routes;
use tonic::{Code, Status};

use super::json;

/// A method of the gRPC services, reachable by its gateway path.
pub(super) struct Gateway {
    grpc: Routes,
    method: MethodDescriptor,
    /// `/etcdserverpb.KV/Range`.
    grpc_path: axum::http::uri::PathAndQuery,
}

impl Gateway {
    pub fn new(grpc: Routes, method: MethodDescriptor) -> Self {
        let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name())
            .parse()
            .expect("a method's full name is a valid path");
        Gateway { grpc, method, grpc_path }
    }

    pub async fn call(&self, headers: &HeaderMap, body: Bytes) -> Response {
        let streaming = self.method.is_client_streaming() || self.method.is_server_streaming();
        let requests = match json::decode_requests(&self.method.input(), &body) {
            Ok(requests) => requests,
            // etcd's gateway answers a malformed streaming request as an
            // unknown error (500), a malformed unary one as invalid (400).
            Err(e) if streaming => return json::error_response(&Status::new(Code::Unknown, e)),
            Err(e) => return json::error_response(&Status::invalid_argument(e)),
        };
        let mut grpc = tonic::client::Grpc::new(self.grpc.clone())
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        if grpc.ready().await.is_err() {
            return json::error_response(&Status::unavailable("the gRPC services are not ready"));
        }
        let metadata = token_metadata(headers);
        if !streaming {
            let mut request = tonic::Request::new(requests.into_iter().next().unwrap_or_default());
            *request.metadata_mut() = metadata;
            return match grpc.unary(request, self.grpc_path.clone(), RawCodec).await {
                Ok(response) => match json::encode_response(&self.method.output(), response.into_inner()) {
                    Ok(body) => json_response(StatusCode::OK, Body::from(body)),
                    Err(e) => json::error_response(&Status::internal(e)),
                },
                Err(status) => json::error_response(&status),
            };
        }
        let mut request = tonic::Request::new(tokio_stream::iter(requests));
        *request.metadata_mut() = metadata;
        let responses = match grpc.streaming(request, self.grpc_path.clone(), RawCodec).await {
            Ok(responses) => responses.into_inner(),
            Err(status) => return json::error_response(&status),
        };
        let output = self.method.output();
        let lines = responses.map(move |item| {
            let mut line = match item {
                Ok(bytes) => match json::encode_response(&output, bytes) {
                    Ok(result) => json::result_line(&result),
                    Err(e) => json::stream_error_line(&Status::internal(e)),
                },
                Err(status) => json::stream_error_line(&status),
            };
            line.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        });
        json_response(StatusCode::OK, Body::from_stream(lines))
    }
}

fn json_response(status: StatusCode, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

/// The `Authorization` header as the `token` metadata etcd's services read.
fn token_metadata(headers: &HeaderMap) -> tonic::metadata::MetadataMap {
    let mut metadata = tonic::metadata::MetadataMap::new();
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
        && let Ok(value) = token.parse()
    {
        metadata.insert("token", value);
    }
    metadata
}

/// Messages as their encoded bytes: the gateway transcodes JSON to and
/// from those itself (with the descriptors), as can any caller of the
/// services that works from descriptors rather than generated types.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, len)))
    }
}
