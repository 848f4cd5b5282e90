//! The few etcd v3 gRPC messages and calls a snapshot needs, declared by
//! hand from etcd's `rpc.proto` (package `etcdserverpb`), so that building
//! needs no protobuf compiler. Field numbers are etcd's.

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    pub(super) cluster_id: u64,
    #[prost(uint64, tag = "2")]
    pub(super) member_id: u64,
    #[prost(int64, tag = "3")]
    pub(super) revision: i64,
    #[prost(uint64, tag = "4")]
    pub(super) raft_term: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct StatusRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct StatusResponse {
    #[prost(message, optional, tag = "1")]
    pub(super) header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    pub(super) version: String,
    #[prost(int64, tag = "3")]
    pub(super) db_size: i64,
    #[prost(uint64, tag = "4")]
    pub(super) leader: u64,
    #[prost(uint64, tag = "5")]
    pub(super) raft_index: u64,
    #[prost(uint64, tag = "6")]
    pub(super) raft_term: u64,
    #[prost(string, repeated, tag = "8")]
    pub(super) errors: Vec<String>,
    #[prost(bool, tag = "10")]
    pub(super) is_learner: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SnapshotRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SnapshotResponse {
    #[prost(message, optional, tag = "1")]
    pub(super) header: Option<ResponseHeader>,
    #[prost(uint64, tag = "2")]
    pub(super) remaining_bytes: u64,
    #[prost(bytes = "vec", tag = "3")]
    pub(super) blob: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct MemberListRequest {}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Member {
    #[prost(uint64, tag = "1")]
    pub(super) id: u64,
    #[prost(string, tag = "2")]
    pub(super) name: String,
    #[prost(string, repeated, tag = "3")]
    pub(super) peer_urls: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub(super) client_urls: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct MemberListResponse {
    #[prost(message, optional, tag = "1")]
    pub(super) header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    pub(super) members: Vec<Member>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    pub(super) name: String,
    #[prost(string, tag = "2")]
    pub(super) password: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct AuthenticateResponse {
    #[prost(message, optional, tag = "1")]
    pub(super) header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    pub(super) token: String,
}

/// A connection to one member, with the auth token when there is one.
#[derive(Clone)]
pub(super) struct Client {
    grpc: tonic::client::Grpc<Channel>,
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl Client {
    pub(super) fn new(channel: Channel) -> Client {
        Client {
            grpc: tonic::client::Grpc::new(channel),
            token: None,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert("token", token.clone());
        }
        request
    }

    async fn unary<Q, R>(&mut self, path: &'static str, message: Q) -> Result<R, tonic::Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc
            .ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let request = self.request(message);
        let codec = tonic_prost::ProstCodec::<Q, R>::default();
        Ok(self
            .grpc
            .unary(request, PathAndQuery::from_static(path), codec)
            .await?
            .into_inner())
    }

    /// Logs in; later calls carry the token.
    pub(super) async fn authenticate(
        &mut self,
        name: &str,
        password: &str,
    ) -> Result<(), tonic::Status> {
        let response: AuthenticateResponse = self
            .unary(
                "/etcdserverpb.Auth/Authenticate",
                AuthenticateRequest {
                    name: name.to_string(),
                    password: password.to_string(),
                },
            )
            .await?;
        let token = response
            .token
            .parse()
            .map_err(|_| tonic::Status::internal("the auth token is not valid ASCII"))?;
        self.token = Some(token);
        Ok(())
    }

    pub(super) async fn status(&mut self) -> Result<StatusResponse, tonic::Status> {
        self.unary("/etcdserverpb.Maintenance/Status", StatusRequest {})
            .await
    }

    pub(super) async fn member_list(&mut self) -> Result<MemberListResponse, tonic::Status> {
        self.unary("/etcdserverpb.Cluster/MemberList", MemberListRequest {})
            .await
    }

    pub(super) async fn snapshot(
        &mut self,
    ) -> Result<tonic::Streaming<SnapshotResponse>, tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let request = self.request(SnapshotRequest {});
        let codec = tonic_prost::ProstCodec::<SnapshotRequest, SnapshotResponse>::default();
        Ok(self
            .grpc
            .server_streaming(
                request,
                PathAndQuery::from_static("/etcdserverpb.Maintenance/Snapshot"),
                codec,
            )
            .await?
            .into_inner())
    }
}
