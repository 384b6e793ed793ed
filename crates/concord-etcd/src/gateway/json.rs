//! The gateway's JSON, as etcd 3.4's grpc-gateway writes and reads it
//! (golang/protobuf's jsonpb with `OrigName`): field names as in the proto
//! (`create_revision`, `ID`, `dbSize`), 64-bit integers as strings, bytes
//! as base64, enums by name, fields at their default value left out.
//! Requests may use either the proto or the lowerCamel names, numbers or
//! strings for integers; unknown fields are ignored, as etcd does.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use prost::Message;
use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};
use tonic::{Code, Status};

const SERIALIZE: SerializeOptions =
    SerializeOptions::new().use_proto_field_name(true).stringify_64_bit_integers(true).skip_default_fields(true);
const DESERIALIZE: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(false);

/// The request messages a body holds, encoded: one per JSON value in it
/// (a streaming method may be sent several); an empty body is one empty
/// message.
pub(super) fn decode_requests(desc: &MessageDescriptor, body: &[u8]) -> Result<Vec<Bytes>, String> {
    let mut requests = Vec::new();
    for value in serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>() {
        let value = value.map_err(|e| e.to_string())?;
        let message =
            DynamicMessage::deserialize_with_options(desc.clone(), value, &DESERIALIZE).map_err(|e| e.to_string())?;
        requests.push(Bytes::from(message.encode_to_vec()));
    }
    if requests.is_empty() {
        requests.push(Bytes::new());
    }
    Ok(requests)
}

/// A response message (encoded) as JSON.
pub(super) fn encode_response(desc: &MessageDescriptor, bytes: Bytes) -> Result<Vec<u8>, String> {
    let message = DynamicMessage::decode(desc.clone(), bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    message
        .serialize_with_options(&mut serde_json::Serializer::new(&mut out), &SERIALIZE)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// One response of a stream: `{"result": …}`.
pub(super) fn result_line(result: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(result.len() + 11);
    line.extend_from_slice(b"{\"result\":");
    line.extend_from_slice(result);
    line.push(b'}');
    line
}

/// An error in the middle of a stream, as grpc-gateway v1 writes it.
pub(super) fn stream_error_line(status: &Status) -> Vec<u8> {
    let http = http_status(status.code());
    format!(
        "{{\"error\":{{\"grpc_code\":{},\"http_code\":{},\"message\":{},\"http_status\":{}}}}}",
        status.code() as i32,
        http.as_u16(),
        quoted(status.message()),
        quoted(http.canonical_reason().unwrap_or("")),
    )
    .into_bytes()
}

/// An error answer: `{"error", "message", "code"}` with the HTTP status
/// grpc-gateway v1 gives the code.
pub(super) fn error_response(status: &Status) -> Response {
    let message = quoted(status.message());
    let body = format!("{{\"error\":{message},\"message\":{message},\"code\":{}}}", status.code() as i32);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = http_status(status.code());
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    response
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serializes")
}

/// grpc-gateway v1's `HTTPStatusFromCode` (etcd 3.4's gateway).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Aborted => StatusCode::CONFLICT,
        Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb as pb;

    fn pool() -> prost_reflect::DescriptorPool {
        prost_reflect::DescriptorPool::decode(super::super::DESCRIPTORS).unwrap()
    }

    /// Shapes checked against etcd 3.4.23's gateway: proto names, 64-bit
    /// integers as strings, bytes as base64, defaults left out.
    #[test]
    fn responses_are_written_as_etcds_gateway_writes_them() {
        let desc = pool().get_message_by_name("etcdserverpb.RangeResponse").unwrap();
        let response = pb::RangeResponse {
            header: Some(pb::ResponseHeader { cluster_id: 1, member_id: 2, revision: 2, raft_term: 0 }),
            kvs: vec![crate::pb::mvccpb::KeyValue {
                key: "foo".into(),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: "bar".into(),
                lease: 0,
            }],
            more: false,
            count: 1,
        };
        let json = encode_response(&desc, Bytes::from(response.encode_to_vec())).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}],"count":"1"}"#
        );
        let desc = pool().get_message_by_name("etcdserverpb.LeaseGrantResponse").unwrap();
        let grant = pb::LeaseGrantResponse { header: None, id: 7, ttl: 60, error: String::new() };
        let json = encode_response(&desc, Bytes::from(grant.encode_to_vec())).unwrap();
        assert_eq!(String::from_utf8(json).unwrap(), r#"{"ID":"7","TTL":"60"}"#);
    }

    #[test]
    fn requests_take_either_name_numbers_or_strings_and_ignore_unknown_fields() {
        let desc = pool().get_message_by_name("etcdserverpb.RangeRequest").unwrap();
        let body = br#"{"key":"Zm9v","range_end":"Zm9w","limit":"5","sortOrder":"DESCEND","keysOnly":true,"kee":1}
            {"key":"YQ==","limit":2}"#;
        let requests = decode_requests(&desc, body).unwrap();
        assert_eq!(requests.len(), 2);
        let first = pb::RangeRequest::decode(requests[0].clone()).unwrap();
        assert_eq!((first.key.as_ref(), first.range_end.as_ref(), first.limit), (&b"foo"[..], &b"fop"[..], 5));
        assert_eq!(first.sort_order, pb::range_request::SortOrder::Descend as i32);
        assert!(first.keys_only);
        assert_eq!(pb::RangeRequest::decode(requests[1].clone()).unwrap().limit, 2);
        // An empty body is the empty message.
        assert_eq!(decode_requests(&desc, b"").unwrap(), vec![Bytes::new()]);
        for bad in [&br#"{"key":"Zm9v!"}"#[..], br#"{"key":"#, br#"[1]"#, br#"{"keys_only":"yes"}"#] {
            assert!(decode_requests(&desc, bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn errors_carry_etcds_body_and_grpc_gateways_status() {
        let response = error_response(&Status::failed_precondition("etcdserver: authentication is not enabled"));
        assert_eq!(response.status(), StatusCode::PRECONDITION_FAILED);
        let response = error_response(&Status::not_found("etcdserver: requested lease not found"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let line = String::from_utf8(stream_error_line(&Status::invalid_argument("bad \"x\""))).unwrap();
        assert_eq!(
            line,
            r#"{"error":{"grpc_code":3,"http_code":400,"message":"bad \"x\"","http_status":"Bad Request"}}"#
        );
    }
}
