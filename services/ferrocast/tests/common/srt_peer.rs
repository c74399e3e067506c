//! A hand-driven SRT caller on a plain UDP socket, made of srt-protocol's
//! packet types: it completes the HSv5 handshake as a publisher and then
//! sends whatever packets a test chooses, as a hostile client would.

use std::io::Cursor;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use srt_protocol::options::{KeySize, PacketCount, PacketSize, SrtVersion};
use srt_protocol::packet::{
    ControlPacket, ControlTypes, HandshakeControlInfo, HandshakeVsInfo, HsV5Info, Packet,
    SeqNumber, ShakeType, SocketId, SrtControlPacket, SrtHandshake, SrtShakeFlags, TimeStamp,
};

/// A connected raw SRT peer.
pub struct RawPeer {
    socket: UdpSocket,
    server: SocketAddr,
    /// Our socket id.
    pub local_sockid: SocketId,
    /// The id the server gave this session.
    pub remote_sockid: SocketId,
}

fn handshake(
    shake_type: ShakeType,
    socket_id: SocketId,
    syn_cookie: i32,
    info: HandshakeVsInfo,
) -> ControlTypes {
    ControlTypes::Handshake(HandshakeControlInfo {
        init_seq_num: SeqNumber::new_truncate(1000),
        max_packet_size: PacketSize(1500),
        max_flow_size: PacketCount(8192),
        shake_type,
        socket_id,
        syn_cookie,
        peer_addr: [127, 0, 0, 1].into(),
        info,
    })
}

impl RawPeer {
    /// Complete a handshake with `server` as a caller publishing `streamid`.
    pub fn connect(server: SocketAddr, streamid: &str) -> RawPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let local_sockid = SocketId(rand::random::<u32>() | 1);
        let mut peer = RawPeer {
            socket,
            server,
            local_sockid,
            remote_sockid: SocketId(0),
        };
        let induction = handshake(
            ShakeType::Induction,
            local_sockid,
            0,
            HandshakeVsInfo::V5(HsV5Info::default()),
        );
        let cookie = peer
            .exchange(&induction, |hs| hs.shake_type == ShakeType::Induction)
            .syn_cookie;
        let conclusion = handshake(
            ShakeType::Conclusion,
            local_sockid,
            cookie,
            HandshakeVsInfo::V5(HsV5Info {
                key_size: KeySize::Unspecified,
                ext_hs: Some(SrtControlPacket::HandshakeRequest(SrtHandshake {
                    version: SrtVersion::CURRENT,
                    flags: SrtShakeFlags::SUPPORTED,
                    send_latency: Duration::from_millis(120),
                    recv_latency: Duration::from_millis(120),
                })),
                ext_km: None,
                ext_group: None,
                sid: Some(streamid.to_owned()),
            }),
        );
        let response = peer.exchange(&conclusion, |hs| hs.shake_type == ShakeType::Conclusion);
        peer.remote_sockid = response.socket_id;
        peer
    }

    /// Send `request` until a handshake matching `wanted` comes back.
    fn exchange(
        &self,
        request: &ControlTypes,
        wanted: impl Fn(&HandshakeControlInfo) -> bool,
    ) -> HandshakeControlInfo {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            self.send_to(SocketId(0), request.clone());
            let until = Instant::now() + Duration::from_millis(500);
            while let Some(control) = self.recv_control(until) {
                if let ControlTypes::Handshake(hs) = control.control_type {
                    assert!(
                        !matches!(hs.shake_type, ShakeType::Rejection(_)),
                        "handshake rejected: {hs:?}"
                    );
                    if wanted(&hs) {
                        return hs;
                    }
                }
            }
        }
        panic!("no handshake answer from {}", self.server);
    }

    fn send_to(&self, dest: SocketId, control_type: ControlTypes) {
        let mut bytes = Vec::new();
        Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(0),
            dest_sockid: dest,
            control_type,
        })
        .serialize(&mut bytes);
        self.socket.send_to(&bytes, self.server).unwrap();
    }

    /// Send a control packet to our session on the server.
    pub fn send(&self, control_type: ControlTypes) {
        self.send_to(self.remote_sockid, control_type);
    }

    /// Send raw bytes from this peer's address.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.server).unwrap();
    }

    /// The next control packet from the server, or `None` once `deadline`
    /// passes. Data packets and unparseable datagrams are skipped.
    pub fn recv_control(&self, deadline: Instant) -> Option<ControlPacket> {
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok((n, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            if let Ok(Packet::Control(control)) = Packet::parse(&mut Cursor::new(&buf[..n]), false)
            {
                return Some(control);
            }
        }
        None
    }
}
