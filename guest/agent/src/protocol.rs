//! The wire protocol: one JSON object per line, each way.
//!
//! A request is `{"v":1,"id":N,"op":"<name>", ...arguments}`; its response
//! is `{"v":1,"id":N,"ok":<result>}` or
//! `{"v":1,"id":N,"error":{"kind":"<kind>","message":"..."}}`. `id` is
//! chosen by the client and echoed back. A request whose `v` is not
//! [`PROTOCOL_VERSION`] gets an `unsupported_version` error. The result
//! types of each operation are the `*Reply` structs of this module.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version this agent speaks (the `v` field).
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest `len` a `read` or `read_file` request may ask for (1 MiB).
pub const MAX_READ: u64 = 1 << 20;

/// One request: the envelope fields and the operation with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version; must be [`PROTOCOL_VERSION`].
    pub v: u32,
    /// Client-chosen id, echoed in the response.
    pub id: u64,
    /// The operation and its arguments.
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    /// A request of the current protocol version.
    pub fn new(id: u64, op: Op) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            op,
        }
    }
}

/// Which class of device a [`Op::WaitDevice`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// A block device: `/sys/block/<name>` (disks, SCSI LUNs, pmem).
    #[default]
    Block,
    /// A network interface: `/sys/class/net/<name>`.
    Net,
}

fn default_true() -> bool {
    true
}

fn default_count() -> u32 {
    1
}

fn default_timeout_secs() -> u32 {
    5
}

/// The operations, tagged by the `op` field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Liveness check; answers [`PingReply`].
    Ping,
    /// Lists `/sys/block`; answers [`BlockDevicesReply`].
    ListBlock,
    /// Reads `len` bytes at `offset` of `/dev/<device>`; answers [`DataReply`].
    Read {
        /// Device name, such as `sda` (no `/`).
        device: String,
        /// Byte offset.
        offset: u64,
        /// Number of bytes, at most [`MAX_READ`].
        len: u64,
    },
    /// Writes hex `data` at `offset` of `/dev/<device>`, then fsyncs if
    /// `sync` (default true); answers [`WriteReply`].
    Write {
        /// Device name, such as `sda`.
        device: String,
        /// Byte offset.
        offset: u64,
        /// The bytes, hex encoded.
        data: String,
        /// Whether to fsync before answering.
        #[serde(default = "default_true")]
        sync: bool,
    },
    /// Lists `/sys/class/net`; answers [`InterfacesReply`].
    ListNet,
    /// Adds an address (CIDR, like `10.0.0.2/24`) to an interface and sets
    /// it up, with busybox `ip`; answers [`Empty`].
    SetAddress {
        /// Interface name, such as `eth0`.
        interface: String,
        /// Address with prefix length.
        address: String,
    },
    /// Pings a host address with busybox `ping`; answers [`PingHostReply`].
    PingHost {
        /// IPv4 or IPv6 address.
        address: String,
        /// Echo requests to send (default 1).
        #[serde(default = "default_count")]
        count: u32,
        /// Seconds to wait for a reply (default 5).
        #[serde(default = "default_timeout_secs")]
        timeout_secs: u32,
    },
    /// Mounts virtio-fs `tag` at `path` (created if missing); answers [`Empty`].
    Mount {
        /// The virtio-fs tag.
        tag: String,
        /// Absolute mount point in the guest.
        path: String,
        /// Mount read-only.
        #[serde(default)]
        read_only: bool,
    },
    /// Unmounts `path`; answers [`Empty`].
    Unmount {
        /// Absolute mount point in the guest.
        path: String,
    },
    /// Reads a file (from `offset`, at most `len` or [`MAX_READ`] bytes);
    /// answers [`DataReply`].
    ReadFile {
        /// Absolute path in the guest.
        path: String,
        /// Byte offset (default 0).
        #[serde(default)]
        offset: u64,
        /// Maximum bytes (default and cap: [`MAX_READ`]).
        #[serde(default)]
        len: Option<u64>,
    },
    /// Lists a directory; answers [`DirReply`].
    ListDir {
        /// Absolute path in the guest.
        path: String,
    },
    /// Lists pmem block devices; answers [`BlockDevicesReply`].
    ListPmem,
    /// Waits until a device is present (or absent); answers [`WaitReply`]
    /// or a `timeout` error.
    WaitDevice {
        /// Device name, such as `sdb` or `eth1`.
        name: String,
        /// `block` (default) or `net`.
        #[serde(default)]
        class: DeviceClass,
        /// Wait for presence (true, default) or absence (false).
        #[serde(default = "default_true")]
        present: bool,
        /// How long to wait, in milliseconds.
        timeout_ms: u64,
    },
    /// Reads `/proc/uptime`; answers [`UptimeReply`].
    Uptime,
    /// Reads `/proc/meminfo`; answers [`MeminfoReply`].
    Meminfo,
    /// Answers [`Empty`], then powers the guest off.
    PowerOff,
    /// Answers [`Empty`], then reboots the guest.
    Reboot,
    /// Answers [`Empty`], then panics the guest kernel (sysrq `c`).
    Panic,
    /// Sets an interface administratively up or down with busybox `ip link
    /// set`; answers [`Empty`].
    SetLink {
        /// Interface name, such as `eth0`.
        interface: String,
        /// Up (true) or down (false).
        up: bool,
    },
    /// Lists the SCSI hosts (`/sys/class/scsi_host`); answers [`ScsiHostsReply`].
    ListScsiHosts,
    /// Lists the virtio-fs tags (`/sys/fs/virtiofs/*/tag`) and where each
    /// is mounted (`/proc/mounts`); answers [`SharesReply`].
    ListShares,
    /// Whether `path` is writable (`access(W_OK)`: a read-only mount or a
    /// file server refusing writes answers false); answers [`WritableReply`].
    Writable {
        /// Absolute path in the guest.
        path: String,
    },
    /// Writes hex `data` to the file `path`, created or truncated, fsynced
    /// if `sync` (default true); answers [`WriteReply`].
    WriteFile {
        /// Absolute path in the guest (its directory must exist).
        path: String,
        /// The bytes, hex encoded (at most [`MAX_READ`] bytes).
        data: String,
        /// Whether to fsync before answering.
        #[serde(default = "default_true")]
        sync: bool,
    },
    /// Connects to the host (CID 2) on vsock `port`, sends hex `data`,
    /// shuts down its write side and reads until the host closes (at most
    /// [`MAX_READ`] bytes); answers [`DataReply`].
    VsockDial {
        /// Host vsock port.
        port: u32,
        /// The payload, hex encoded (at most [`MAX_READ`] bytes).
        #[serde(default)]
        data: String,
        /// Send and receive timeout in milliseconds (default 10000).
        #[serde(default = "default_dial_timeout_ms")]
        timeout_ms: u64,
    },
    /// Listens on vsock `port` (any CID) and echoes each connection until
    /// its peer half-closes, on a thread of its own; answers [`Empty`] once
    /// the port is bound.
    VsockEcho {
        /// Guest vsock port.
        port: u32,
    },
    /// Loads every named device from the guest side at once for `seconds`
    /// (a stress mode for the host's containment tests), on threads of its
    /// own, and answers [`Empty`] at once: 64 KiB writes with an fsync
    /// every 16 to each block device of `disks` (`/dev/<name>`, past its
    /// first MiB), broadcast raw Ethernet frames out of each interface of
    /// `nics`, connections to host vsock `vsock_port` in a loop, and lines
    /// to the console. See [`FloodPlan`].
    Flood(FloodPlan),
    /// Measures block I/O on `/dev/<device>` (a benchmark, bounded by
    /// [`MAX_IO_BENCH_MS`]); answers [`IoBenchReply`] when done. See
    /// [`DiskBenchPlan`].
    DiskBench(DiskBenchPlan),
    /// Binds guest vsock `port` and answers [`Empty`]; a thread then
    /// accepts one connection (within `timeout_ms`), reads it until the
    /// peer half-closes (at most [`MAX_STREAM_BYTES`]), sends the count
    /// back as 8 bytes little-endian and closes. The host side of a
    /// host-to-guest stream benchmark.
    VsockSink {
        /// Guest vsock port.
        port: u32,
        /// How long to wait for the connection and for each read, in
        /// milliseconds (default 10000, at most [`MAX_IO_BENCH_MS`]).
        #[serde(default = "default_dial_timeout_ms")]
        timeout_ms: u64,
    },
    /// Connects to the host (CID 2) on vsock `port`, writes `bytes` bytes,
    /// half-closes and reads until the host closes (at most 4 KiB: its
    /// acknowledgement); answers [`IoBenchReply`].
    VsockSend {
        /// Host vsock port.
        port: u32,
        /// Bytes to send (1 to [`MAX_STREAM_BYTES`]).
        bytes: u64,
        /// Bound of the whole transfer in milliseconds (default 10000, at
        /// most [`MAX_IO_BENCH_MS`]); each write and read is bounded by it
        /// as well.
        #[serde(default = "default_dial_timeout_ms")]
        timeout_ms: u64,
    },
    /// Sends broadcast raw Ethernet frames (EtherType 0x88b5) of
    /// `frame_len` bytes out of `interface` (it must be up) until `bytes`
    /// bytes have gone out or `timeout_ms` has passed (then a `timeout`
    /// error); answers [`IoBenchReply`].
    NetSend {
        /// Interface name, such as `eth0`.
        interface: String,
        /// Bytes to send (1 to [`MAX_STREAM_BYTES`]).
        bytes: u64,
        /// Bytes per frame, headers included ([`MIN_FRAME_LEN`] to
        /// [`MAX_FRAME_LEN`], default [`MAX_FRAME_LEN`]).
        #[serde(default = "default_frame_len")]
        frame_len: u32,
        /// Bound of the whole run in milliseconds (default 10000, at most
        /// [`MAX_IO_BENCH_MS`]).
        #[serde(default = "default_dial_timeout_ms")]
        timeout_ms: u64,
    },
}

/// The longest benchmark op ([`Op::DiskBench`], [`Op::VsockSink`],
/// [`Op::VsockSend`], [`Op::NetSend`]): 5 minutes.
pub const MAX_IO_BENCH_MS: u64 = 300_000;
/// The most bytes a benchmark op moves (16 GiB).
pub const MAX_STREAM_BYTES: u64 = 16 << 30;
/// The smallest frame [`Op::NetSend`] sends (an Ethernet minimum without FCS).
pub const MIN_FRAME_LEN: u32 = 60;
/// The largest frame [`Op::NetSend`] sends (1500-byte MTU plus the header).
pub const MAX_FRAME_LEN: u32 = 1514;
/// The largest request of an [`Op::DiskBench`] (4 MiB).
pub const MAX_BLOCK_SIZE: u32 = 4 << 20;
/// The most threads of an [`Op::DiskBench`].
pub const MAX_BENCH_THREADS: u32 = 64;

fn default_frame_len() -> u32 {
    MAX_FRAME_LEN
}

fn default_threads() -> u32 {
    1
}

/// The access pattern of an [`Op::DiskBench`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskPattern {
    /// One pass of reads over the span, in order (the threads split it).
    SeqRead,
    /// One pass of writes over the span, in order (the threads split it),
    /// then `fdatasync`, inside the time measured.
    SeqWrite,
    /// Reads at random `block_size`-aligned offsets of the span, by every
    /// thread, until `duration_ms` has passed.
    RandRead,
}

/// What an [`Op::DiskBench`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskBenchPlan {
    /// Block device name under `/dev` (a single path component).
    pub device: String,
    /// The access pattern.
    pub pattern: DiskPattern,
    /// Bytes per request: a multiple of 512, at most [`MAX_BLOCK_SIZE`].
    pub block_size: u32,
    /// The bytes of the device used, from offset 0: a multiple of
    /// `block_size`, at most the device's size and [`MAX_STREAM_BYTES`].
    pub span: u64,
    /// Threads, each with its own request in flight (the queue depth):
    /// 1 to [`MAX_BENCH_THREADS`] (default 1).
    #[serde(default = "default_threads")]
    pub threads: u32,
    /// For `rand_read`, how long to run; for the sequential patterns, the
    /// time limit (a `timeout` error when the pass takes longer). 1 to
    /// [`MAX_IO_BENCH_MS`] milliseconds.
    pub duration_ms: u64,
    /// Whether to open the device with `O_DIRECT` (default true), so the
    /// guest's page cache is bypassed.
    #[serde(default = "default_true")]
    pub direct: bool,
}

/// Result of [`Op::DiskBench`], [`Op::VsockSend`] and [`Op::NetSend`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoBenchReply {
    /// Bytes moved.
    pub bytes: u64,
    /// Requests, writes or frames that moved them.
    pub ops: u64,
    /// Time they took, measured in the guest, in microseconds.
    pub elapsed_us: u64,
}

/// What an [`Op::Flood`] loads.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FloodPlan {
    /// How long, in seconds (1 to [`MAX_FLOOD_SECS`]).
    pub seconds: u32,
    /// Block devices to write (names under `/dev`).
    #[serde(default)]
    pub disks: Vec<String>,
    /// Network interfaces to send raw frames out of (they must be up).
    #[serde(default)]
    pub nics: Vec<String>,
    /// Host vsock port to connect to in a loop (whether or not the host
    /// listens: refused connections load the device as well).
    #[serde(default)]
    pub vsock_port: Option<u32>,
    /// Whether to write lines to `/dev/console` in a loop.
    #[serde(default)]
    pub console: bool,
}

/// The longest [`Op::Flood`] (10 minutes).
pub const MAX_FLOOD_SECS: u32 = 600;

fn default_dial_timeout_ms() -> u64 {
    10_000
}

/// What went wrong, machine-readable (the `error.kind` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line is not a JSON object of the expected shape.
    BadRequest,
    /// The `v` field is not [`PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// The `op` field names no known operation.
    UnknownOp,
    /// An argument is out of range or malformed.
    InvalidArgument,
    /// The device, file or interface does not exist.
    NotFound,
    /// A wait ran out of time.
    Timeout,
    /// An I/O error other than "not found".
    Io,
    /// A helper program (`ip`, `ping`) failed.
    CommandFailed,
}

/// The `error` object of a failed response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The machine-readable kind.
    pub kind: ErrorKind,
    /// A human-readable message.
    pub message: String,
    /// The OS error number behind an `io` error, when there is one (so a
    /// client can tell "read-only" from "permission denied" from "refused").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
}

impl ErrorBody {
    /// Builds an error body without an OS error number.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            errno: None,
        }
    }

    /// Sets the OS error number.
    pub fn with_errno(mut self, errno: Option<i32>) -> Self {
        self.errno = errno;
        self
    }
}

/// One response: `ok` with the operation's result, or `error`.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    /// Protocol version of the response (always [`PROTOCOL_VERSION`]).
    pub v: u32,
    /// The id of the request this answers (0 if it could not be read).
    pub id: u64,
    /// The result (`ok`) or the error.
    pub result: Result<Value, ErrorBody>,
}

/// The wire shape of [`Response`]: exactly one of `ok` and `error` is set.
#[derive(Serialize, Deserialize)]
struct RawResponse {
    v: u32,
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

impl Serialize for Response {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (ok, error) = match &self.result {
            Ok(value) => (Some(value.clone()), None),
            Err(error) => (None, Some(error.clone())),
        };
        RawResponse {
            v: self.v,
            id: self.id,
            ok,
            error,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawResponse::deserialize(deserializer)?;
        let result = match (raw.ok, raw.error) {
            (Some(value), None) => Ok(value),
            (None, Some(error)) => Err(error),
            // `"ok": null` deserializes as None: treat it as an empty success.
            (None, None) => Ok(Value::Null),
            (Some(_), Some(_)) => {
                return Err(serde::de::Error::custom(
                    "response has both \"ok\" and \"error\"",
                ));
            }
        };
        Ok(Self {
            v: raw.v,
            id: raw.id,
            result,
        })
    }
}

impl Response {
    /// A success response carrying `result`.
    pub fn ok(id: u64, result: Value) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            result: Ok(result),
        }
    }

    /// An error response.
    pub fn error(id: u64, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            v: PROTOCOL_VERSION,
            id,
            result: Err(ErrorBody::new(kind, message)),
        }
    }
}

/// Encodes a message as one line of JSON, without the trailing newline.
pub fn encode<T: Serialize>(message: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string(message)
}

/// Decodes one request line, checking the version before the operation so
/// that a future client gets `unsupported_version`, not `unknown_op`. On
/// failure returns the error response to send (with the id if one was read).
pub fn decode_request(line: &str) -> Result<Request, Response> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| Response::error(0, ErrorKind::BadRequest, format!("not JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Response::error(
            0,
            ErrorKind::BadRequest,
            "a request must be a JSON object",
        ));
    };
    let id = object.get("id").and_then(Value::as_u64);
    let Some(id) = id else {
        return Err(Response::error(
            0,
            ErrorKind::BadRequest,
            "missing or non-integer \"id\"",
        ));
    };
    match object.get("v").and_then(Value::as_u64) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        Some(v) => {
            return Err(Response::error(
                id,
                ErrorKind::UnsupportedVersion,
                format!(
                    "protocol version {v} is not supported; this agent speaks {PROTOCOL_VERSION}"
                ),
            ));
        }
        None => {
            return Err(Response::error(
                id,
                ErrorKind::BadRequest,
                "missing or non-integer \"v\"",
            ));
        }
    }
    let Some(op) = object.get("op").and_then(Value::as_str) else {
        return Err(Response::error(
            id,
            ErrorKind::BadRequest,
            "missing or non-string \"op\"",
        ));
    };
    let op = op.to_owned();
    serde_json::from_value::<Request>(value).map_err(|e| {
        let message = e.to_string();
        let kind = if message.contains("unknown variant") {
            ErrorKind::UnknownOp
        } else {
            ErrorKind::BadRequest
        };
        Response::error(id, kind, format!("op {op:?}: {message}"))
    })
}

/// The empty result (`{}`) of operations that only succeed or fail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Result of [`Op::Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingReply {
    /// Always true.
    pub pong: bool,
    /// The agent's crate version.
    pub agent_version: String,
    /// The protocol version it speaks.
    pub protocol: u32,
}

/// One block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// Kernel name, such as `sda`, `vda`, `pmem0`.
    pub name: String,
    /// Size in bytes (`/sys/block/<name>/size` times 512).
    pub size_bytes: u64,
    /// Whether the kernel marks it read-only.
    pub read_only: bool,
    /// SCSI address `host:channel:target:lun` when it is a SCSI disk.
    pub scsi: Option<String>,
    /// The PCI function it hangs off (`0000:00:03.0`: the virtio-blk device,
    /// or the SCSI host adapter of a SCSI disk), from its sysfs device path.
    #[serde(default)]
    pub pci: Option<String>,
}

/// One SCSI host adapter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScsiHost {
    /// The host number (the `H` of `H:C:T:L`).
    pub host: u32,
    /// Its driver (`proc_name`, such as `virtio_scsi`), when readable.
    pub driver: Option<String>,
    /// The PCI function of the adapter, from its sysfs device path.
    pub pci: Option<String>,
}

/// Result of [`Op::ListScsiHosts`], sorted by host number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScsiHostsReply {
    /// The host adapters.
    pub hosts: Vec<ScsiHost>,
}

/// One virtio-fs device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// Its tag (the mount source).
    pub tag: String,
    /// Where it is mounted (the first virtio-fs mount of the tag), if it is.
    pub mounted_at: Option<String>,
}

/// Result of [`Op::ListShares`], sorted by tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharesReply {
    /// The virtio-fs devices.
    pub shares: Vec<Share>,
}

/// Result of [`Op::Writable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritableReply {
    /// Whether `access(W_OK)` succeeded.
    pub writable: bool,
}

/// Result of [`Op::ListBlock`] and [`Op::ListPmem`], sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDevicesReply {
    /// The devices.
    pub devices: Vec<BlockDevice>,
}

/// Result of [`Op::Read`] and [`Op::ReadFile`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReply {
    /// The bytes read, hex encoded (shorter than asked at end of file).
    pub data: String,
    /// Number of bytes read.
    pub len: u64,
}

/// Result of [`Op::Write`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    /// Number of bytes written.
    pub written: u64,
    /// Whether the data was fsynced.
    pub synced: bool,
}

/// One network interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Interface name, such as `eth0`.
    pub name: String,
    /// MAC address as the kernel prints it (`52:54:00:12:34:56`).
    pub mac: String,
    /// `operstate`: `up`, `down`, `unknown`, ...
    pub operstate: String,
    /// Link carrier, when the kernel reports one (not for interfaces that are down).
    pub carrier: Option<bool>,
    /// MTU, when readable.
    pub mtu: Option<u32>,
    /// Whether it is administratively up (`IFF_UP` in `flags`), when readable.
    #[serde(default)]
    pub admin_up: Option<bool>,
}

/// Result of [`Op::ListNet`], sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfacesReply {
    /// The interfaces.
    pub interfaces: Vec<Interface>,
}

/// Result of [`Op::PingHost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingHostReply {
    /// Whether `ping` exited 0 (at least one reply).
    pub reachable: bool,
    /// What `ping` printed (stdout then stderr).
    pub output: String,
}

/// Kind of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// One directory entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// File name.
    pub name: String,
    /// What it is.
    pub kind: EntryKind,
    /// Size in bytes (of the link itself for symlinks).
    pub size: u64,
}

/// Result of [`Op::ListDir`], sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirReply {
    /// The entries, without `.` and `..`.
    pub entries: Vec<DirEntry>,
}

/// Result of [`Op::WaitDevice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaitReply {
    /// The state reached (equal to the requested `present`).
    pub present: bool,
    /// How long the wait took, in milliseconds.
    pub waited_ms: u64,
}

/// Result of [`Op::Uptime`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UptimeReply {
    /// Seconds since boot.
    pub uptime_secs: f64,
    /// Idle seconds summed over CPUs.
    pub idle_secs: f64,
}

/// Result of [`Op::Meminfo`] (values in KiB, as `/proc/meminfo` gives them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeminfoReply {
    /// `MemTotal`.
    pub total_kib: u64,
    /// `MemFree`.
    pub free_kib: u64,
    /// `MemAvailable`, if the kernel reports it.
    pub available_kib: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trips_through_a_line() {
        let request = Request::new(
            7,
            Op::Read {
                device: "sda".into(),
                offset: 512,
                len: 16,
            },
        );
        let line = encode(&request).unwrap();
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({"v":1,"id":7,"op":"read","device":"sda","offset":512,"len":16})
        );
        assert_eq!(decode_request(&line), Ok(request));
    }

    #[test]
    fn defaults_apply() {
        let request =
            decode_request(r#"{"v":1,"id":1,"op":"write","device":"vda","offset":0,"data":"00"}"#)
                .unwrap();
        assert!(matches!(request.op, Op::Write { sync: true, .. }));
        let request =
            decode_request(r#"{"v":1,"id":2,"op":"wait_device","name":"sdb","timeout_ms":5}"#)
                .unwrap();
        assert_eq!(
            request.op,
            Op::WaitDevice {
                name: "sdb".into(),
                class: DeviceClass::Block,
                present: true,
                timeout_ms: 5
            }
        );
        let request =
            decode_request(r#"{"v":1,"id":3,"op":"ping_host","address":"10.0.0.1"}"#).unwrap();
        assert_eq!(
            request.op,
            Op::PingHost {
                address: "10.0.0.1".into(),
                count: 1,
                timeout_secs: 5
            }
        );
    }

    #[test]
    fn io_bench_ops_decode_with_defaults() {
        let request = decode_request(
            r#"{"v":1,"id":1,"op":"disk_bench","device":"sda","pattern":"rand_read","block_size":4096,"span":1048576,"duration_ms":5000}"#,
        )
        .unwrap();
        assert_eq!(
            request.op,
            Op::DiskBench(DiskBenchPlan {
                device: "sda".into(),
                pattern: DiskPattern::RandRead,
                block_size: 4096,
                span: 1 << 20,
                threads: 1,
                duration_ms: 5000,
                direct: true,
            })
        );
        let request =
            decode_request(r#"{"v":1,"id":2,"op":"net_send","interface":"eth0","bytes":10}"#)
                .unwrap();
        assert_eq!(
            request.op,
            Op::NetSend {
                interface: "eth0".into(),
                bytes: 10,
                frame_len: MAX_FRAME_LEN,
                timeout_ms: 10_000
            }
        );
        let request = decode_request(r#"{"v":1,"id":3,"op":"vsock_sink","port":5}"#).unwrap();
        assert_eq!(
            request.op,
            Op::VsockSink {
                port: 5,
                timeout_ms: 10_000
            }
        );
        let line = encode(&Request::new(
            4,
            Op::VsockSend {
                port: 6,
                bytes: 7,
                timeout_ms: 8,
            },
        ))
        .unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":4,"op":"vsock_send","port":6,"bytes":7,"timeout_ms":8}"#
        );
    }

    #[test]
    fn unit_ops_decode() {
        for (name, op) in [
            ("ping", Op::Ping),
            ("list_block", Op::ListBlock),
            ("list_net", Op::ListNet),
            ("list_pmem", Op::ListPmem),
            ("uptime", Op::Uptime),
            ("meminfo", Op::Meminfo),
            ("power_off", Op::PowerOff),
            ("reboot", Op::Reboot),
            ("panic", Op::Panic),
            ("list_scsi_hosts", Op::ListScsiHosts),
            ("list_shares", Op::ListShares),
        ] {
            let line = format!(r#"{{"v":1,"id":9,"op":"{name}"}}"#);
            assert_eq!(decode_request(&line), Ok(Request::new(9, op.clone())));
            assert_eq!(encode(&Request::new(9, op)).unwrap(), line);
        }
    }

    fn error_kind(line: &str) -> (u64, ErrorKind) {
        let response = decode_request(line).unwrap_err();
        (response.id, response.result.unwrap_err().kind)
    }

    #[test]
    fn bad_requests_are_classified() {
        assert_eq!(error_kind("nope"), (0, ErrorKind::BadRequest));
        assert_eq!(error_kind("[1]"), (0, ErrorKind::BadRequest));
        assert_eq!(
            error_kind(r#"{"v":1,"op":"ping"}"#),
            (0, ErrorKind::BadRequest)
        );
        assert_eq!(
            error_kind(r#"{"v":2,"id":4,"op":"ping"}"#),
            (4, ErrorKind::UnsupportedVersion)
        );
        assert_eq!(
            error_kind(r#"{"v":2,"id":4,"op":"from_the_future"}"#),
            (4, ErrorKind::UnsupportedVersion)
        );
        assert_eq!(
            error_kind(r#"{"id":4,"op":"ping"}"#),
            (4, ErrorKind::BadRequest)
        );
        assert_eq!(error_kind(r#"{"v":1,"id":5}"#), (5, ErrorKind::BadRequest));
        assert_eq!(
            error_kind(r#"{"v":1,"id":5,"op":"fly"}"#),
            (5, ErrorKind::UnknownOp)
        );
        assert_eq!(
            error_kind(r#"{"v":1,"id":6,"op":"read","device":"sda"}"#),
            (6, ErrorKind::BadRequest)
        );
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response::ok(3, json!({"pong": true}));
        let line = encode(&ok).unwrap();
        assert_eq!(line, r#"{"v":1,"id":3,"ok":{"pong":true}}"#);
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), ok);

        let error = Response::error(4, ErrorKind::NotFound, "no sdz");
        let line = encode(&error).unwrap();
        assert_eq!(
            line,
            r#"{"v":1,"id":4,"error":{"kind":"not_found","message":"no sdz"}}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&line).unwrap(), error);

        assert!(
            serde_json::from_str::<Response>(
                r#"{"v":1,"id":4,"ok":{},"error":{"kind":"io","message":"x"}}"#
            )
            .is_err()
        );
    }
}
