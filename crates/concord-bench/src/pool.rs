//! gRPC connections to the endpoints, handed out round-robin, and the keys
//! and values a workload writes.

use bytes::Bytes;
use concord_etcd_proto::etcdserverpb::kv_client::KvClient;
use concord_etcd_proto::etcdserverpb::lease_client::LeaseClient;
use concord_etcd_proto::etcdserverpb::watch_client::WatchClient;
use rand::Rng;
use tonic::transport::{Channel, Endpoint};

use crate::Common;

#[derive(Clone)]
pub struct Pool {
    channels: Vec<Channel>,
    pub endpoint: String,
}

impl Pool {
    pub async fn connect(common: &Common) -> Result<Pool, String> {
        let endpoints: Vec<&str> = common.endpoints.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        if endpoints.is_empty() {
            return Err("no endpoint given".into());
        }
        let mut channels = Vec::new();
        for i in 0..common.conns.max(1) {
            let endpoint = endpoints[i % endpoints.len()];
            let url = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
            let channel = Endpoint::from_shared(url)
                .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?
                .tcp_nodelay(true)
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
            channels.push(channel);
        }
        Ok(Pool { channels, endpoint: common.endpoints.clone() })
    }

    fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i)).max_decoding_message_size(64 << 20)
    }

    pub fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
    }

    pub fn watch(&self, i: usize) -> WatchClient<Channel> {
        WatchClient::new(self.channel(i)).max_decoding_message_size(64 << 20)
    }
}

/// Keys of `key_size` bytes under a prefix, drawn from the key space.
#[derive(Clone)]
pub struct Keys {
    prefix: String,
    size: usize,
    space: u64,
    sequential: bool,
}

impl Keys {
    pub fn new(common: &Common, prefix: &str) -> Self {
        Keys {
            prefix: prefix.into(),
            size: common.key_size,
            space: common.key_space.max(1),
            sequential: common.sequential_keys,
        }
    }

    /// The key for operation `seq`.
    pub fn pick(&self, seq: u64) -> Bytes {
        let index = if self.sequential { seq % self.space } else { rand::rng().random_range(0..self.space) };
        self.nth(index)
    }

    pub fn nth(&self, index: u64) -> Bytes {
        let width = self.size.saturating_sub(self.prefix.len()).max(1);
        Bytes::from(format!("{}{index:0width$}", self.prefix))
    }

    pub fn space(&self) -> u64 {
        self.space
    }

    /// The etcd range end that selects every key under the prefix.
    pub fn prefix_range(&self) -> (Bytes, Bytes) {
        let start = Bytes::from(self.prefix.clone());
        let mut end = self.prefix.clone().into_bytes();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        (start, Bytes::from(end))
    }
}

pub fn value(size: usize) -> Bytes {
    Bytes::from(vec![b'x'; size])
}
