//! Who publishes a bus stream: the holder of its lease, reached at the
//! endpoint of its node record.

use ferrocast_hls::BusName;
use ferrocast_registry::{NodeId, Registry, Role};

/// The role whose holder publishes `name`: ingest for a source, transcode
/// for a rung.
pub(crate) fn publishing_role(name: &BusName) -> Role {
    if name.is_source() {
        Role::Ingest
    } else {
        Role::Transcode
    }
}

/// The node that publishes `name` now and its bus endpoint, or why there
/// is none.
pub(crate) async fn endpoint_of(
    registry: &dyn Registry,
    name: &BusName,
) -> Result<(NodeId, String), String> {
    let role = publishing_role(name);
    let lease = registry
        .holder(&name.stream, role)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "nobody holds the {} lease of {}",
                role.as_str(),
                name.stream
            )
        })?;
    let nodes = registry.nodes().await.map_err(|e| e.to_string())?;
    nodes
        .into_iter()
        .find(|n| n.id == lease.holder)
        .map(|n| (n.id, n.endpoint))
        .ok_or_else(|| {
            format!(
                "node {} (holder of {name}) has no live record",
                lease.holder
            )
        })
}
