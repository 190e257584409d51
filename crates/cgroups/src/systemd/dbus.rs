//! A minimal synchronous D-Bus client: the few method calls the systemd driver makes, over the
//! system bus's unix socket, blocking, one call in flight, every read bounded by a timeout.
//!
//! Why not a crate: carve-oci is on the container start path and its binary size is a
//! benchmarked target (docs/performance.md: peak RSS ≤ 3 MB, mostly text faulted in). zbus, the
//! maintained pure-Rust client, brought an async executor, a reactor and their helper threads:
//! ~430 KiB of text in the static carve-oci for five method calls. rustbus (sync) is no longer
//! released. The wire format needed here is small and fixed by the D-Bus specification
//! ("Message Protocol"): little-endian messages, `EXTERNAL` authentication, method calls whose
//! bodies are strings, booleans and arrays of `(sv)` unit properties, and replies of type `s`,
//! `o` or `v` holding a string. Unit tests check the marshalling against zvariant (zbus's
//! encoder) and against a real `dbus-daemon`, which validates every message it receives.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` is not set (the specification's default).
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
/// How long one reply may take (libdbus's default method-call timeout is 25 s).
const REPLY_TIMEOUT: Duration = Duration::from_secs(25);
/// The specification's limit on a whole message.
const MAX_MESSAGE: usize = 128 << 20;

const METHOD_CALL: u8 = 1;
const METHOD_RETURN: u8 = 2;
const ERROR: u8 = 3;

/// A D-Bus call that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket: connect, read or write (a reply that took too long is a read timeout).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The bus refused us or answered outside the protocol.
    #[error("D-Bus protocol: {0}")]
    Protocol(String),
    /// The peer answered with an error.
    #[error("{name}: {message}")]
    Method {
        /// The error name (`org.freedesktop.systemd1.NoSuchUnit`).
        name: String,
        /// Its message, if any.
        message: String,
    },
}

impl Error {
    /// Whether this is the peer's error whose name ends in `name` (`NoSuchUnit`).
    pub fn is(&self, name: &str) -> bool {
        matches!(self, Error::Method { name: n, .. } if n.ends_with(name))
    }
}

fn proto(msg: impl Into<String>) -> Error {
    Error::Protocol(msg.into())
}

/// A unit property value: the D-Bus types systemd's transient-unit properties need here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `b`
    Bool(bool),
    /// `t`
    U64(u64),
    /// `s`
    Str(String),
    /// `au` (PIDs)
    U32s(Vec<u32>),
    /// `as` (Wants)
    Strs(Vec<String>),
    /// `ay` (AllowedCPUs, AllowedMemoryNodes)
    Bytes(Vec<u8>),
    /// `a(ss)` (DeviceAllow)
    StrPairs(Vec<(String, String)>),
    /// `a(st)` (IO bandwidth lists)
    StrU64s(Vec<(String, u64)>),
}

impl Value {
    fn signature(&self) -> &'static str {
        match self {
            Value::Bool(_) => "b",
            Value::U64(_) => "t",
            Value::Str(_) => "s",
            Value::U32s(_) => "au",
            Value::Strs(_) => "as",
            Value::Bytes(_) => "ay",
            Value::StrPairs(_) => "a(ss)",
            Value::StrU64s(_) => "a(st)",
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Value::Bool(b) => w.u32(u32::from(*b)),
            Value::U64(v) => w.u64(*v),
            Value::Str(s) => w.str(s),
            Value::U32s(v) => w.array(4, |w| v.iter().for_each(|x| w.u32(*x))),
            Value::Strs(v) => w.array(4, |w| v.iter().for_each(|s| w.str(s))),
            Value::Bytes(v) => w.array(1, |w| w.buf.extend_from_slice(v)),
            Value::StrPairs(v) => w.array(8, |w| {
                for (a, b) in v {
                    w.align(8);
                    w.str(a);
                    w.str(b);
                }
            }),
            Value::StrU64s(v) => w.array(8, |w| {
                for (a, b) in v {
                    w.align(8);
                    w.str(a);
                    w.u64(*b);
                }
            }),
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident),*) => {$(
        impl From<$t> for Value {
            fn from(x: $t) -> Value {
                Value::$v(x.into())
            }
        }
    )*};
}
value_from!(bool => Bool, u64 => U64, String => Str, &str => Str, Vec<u32> => U32s,
    Vec<String> => Strs, Vec<u8> => Bytes, Vec<(String, String)> => StrPairs,
    Vec<(String, u64)> => StrU64s);

/// One argument of a method call.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// `s`
    Str(&'a str),
    /// `b`
    Bool(bool),
    /// `a(sv)`: named properties.
    Props(&'a [(&'a str, Value)]),
    /// `a(sa(sv))`: auxiliary units (always empty here, but typed).
    NoAux,
}

impl Arg<'_> {
    fn signature(&self) -> &'static str {
        match self {
            Arg::Str(_) => "s",
            Arg::Bool(_) => "b",
            Arg::Props(_) => "a(sv)",
            Arg::NoAux => "a(sa(sv))",
        }
    }

    fn write(&self, w: &mut Writer) {
        match self {
            Arg::Str(s) => w.str(s),
            Arg::Bool(b) => w.u32(u32::from(*b)),
            Arg::Props(p) => w.array(8, |w| {
                for (name, v) in p.iter() {
                    w.align(8);
                    w.str(name);
                    w.sig(v.signature());
                    v.write(w);
                }
            }),
            Arg::NoAux => w.array(8, |_| {}),
        }
    }
}

/// Marshals into a buffer whose offset 0 is 8-aligned in the message (the header is padded to
/// 8, so a body written on its own aligns as in the message).
#[derive(Default)]
struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn align(&mut self, n: usize) {
        while self.buf.len() % n != 0 {
            self.buf.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.align(8);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    fn sig(&mut self, s: &str) {
        self.buf.push(s.len() as u8);
        self.buf.extend_from_slice(s.as_bytes());
        self.buf.push(0);
    }
    /// An array: its byte length, padding to the element alignment (present even when empty;
    /// not counted in the length), the elements.
    fn array(&mut self, elem_align: usize, f: impl FnOnce(&mut Writer)) {
        self.u32(0);
        let at = self.buf.len() - 4;
        self.align(elem_align);
        let start = self.buf.len();
        f(self);
        let len = (self.buf.len() - start) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
    /// A header field `(yv)` with a string-like value of type `ty` (`o`, `s` or `g`).
    fn field(&mut self, code: u8, ty: &str, v: &str) {
        self.align(8);
        self.buf.push(code);
        self.sig(ty);
        if ty == "g" {
            self.sig(v);
        } else {
            self.str(v);
        }
    }
}

/// Where a method call goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The bus name (`org.freedesktop.systemd1`).
    pub dest: &'a str,
    /// The object path.
    pub path: &'a str,
    /// The interface.
    pub iface: &'a str,
}

/// A whole method-call message (header, padding, body), little endian.
pub fn method_call(serial: u32, to: Target, member: &str, args: &[Arg]) -> Vec<u8> {
    let mut body = Writer::default();
    let mut signature = String::new();
    for a in args {
        signature.push_str(a.signature());
        a.write(&mut body);
    }
    let mut m = Writer::default();
    m.buf.extend_from_slice(&[b'l', METHOD_CALL, 0, 1]);
    m.u32(body.buf.len() as u32);
    m.u32(serial);
    m.array(8, |w| {
        w.field(1, "o", to.path);
        w.field(2, "s", to.iface);
        w.field(3, "s", member);
        w.field(6, "s", to.dest);
        if !signature.is_empty() {
            w.field(8, "g", &signature);
        }
    });
    m.align(8);
    m.buf.extend_from_slice(&body.buf);
    m.buf
}

/// Reads a received message's body or header fields.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn align(&mut self, n: usize) {
        self.pos = self.pos.div_ceil(n) * n;
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let s = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or_else(|| proto("message ends inside a value"))?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, Error> {
        self.align(4);
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn text(&mut self, len: usize) -> Result<String, Error> {
        let s = self.take(len + 1)?;
        String::from_utf8(s[..len].to_vec()).map_err(|_| proto("a string is not UTF-8"))
    }
    fn str(&mut self) -> Result<String, Error> {
        let n = self.u32()? as usize;
        self.text(n)
    }
    fn sig(&mut self) -> Result<String, Error> {
        let n = self.u8()? as usize;
        self.text(n)
    }
    /// A value of a single complete type that is a string, object path, signature or u32
    /// (every header field; replies' `s`, `o` and `v` of those).
    fn simple(&mut self, ty: &str) -> Result<String, Error> {
        match ty {
            "s" | "o" => self.str(),
            "g" => self.sig(),
            "u" => Ok(self.u32()?.to_string()),
            "v" => {
                let inner = self.sig()?;
                self.simple(&inner)
            }
            t => Err(proto(format!("unexpected value of type {t:?}"))),
        }
    }
}

/// A received message.
struct Message {
    kind: u8,
    reply_serial: u32,
    error_name: String,
    signature: String,
    body: Vec<u8>,
}

impl Message {
    /// Parses a message's fixed header and fields from `head` (everything up to the body).
    fn parse(head: &[u8], body: Vec<u8>) -> Result<Message, Error> {
        let mut r = Reader { buf: head, pos: 0 };
        let _endian = r.u8()?;
        let kind = r.u8()?;
        r.pos = 12;
        let fields_len = r.u32()? as usize;
        let end = 16 + fields_len;
        let mut m = Message {
            kind,
            reply_serial: 0,
            error_name: String::new(),
            signature: String::new(),
            body,
        };
        while r.pos < end {
            r.align(8);
            let code = r.u8()?;
            let ty = r.sig()?;
            let v = r.simple(&ty)?;
            match code {
                4 => m.error_name = v,
                5 => m.reply_serial = v.parse().unwrap_or(0),
                8 => m.signature = v,
                _ => {}
            }
        }
        Ok(m)
    }

    /// The body's first value as a string, when the body starts with `s`, `o` or a `v` holding
    /// one of those.
    fn first_string(&self) -> Result<String, Error> {
        let ty = self.signature.chars().next().map(String::from);
        let ty = ty.ok_or_else(|| proto("reply has no body"))?;
        Reader {
            buf: &self.body,
            pos: 0,
        }
        .simple(&ty)
    }
}

/// A connection to a message bus, authenticated and registered (`Hello`).
pub struct Bus {
    sock: UnixStream,
    serial: u32,
}

impl Bus {
    /// Connects to the system bus (`DBUS_SYSTEM_BUS_ADDRESS` if it is a `unix:path=` address).
    pub fn system() -> Result<Bus, Error> {
        let addr = std::env::var("DBUS_SYSTEM_BUS_ADDRESS").ok();
        let path = addr
            .as_deref()
            .and_then(|a| a.split(';').find_map(|a| a.strip_prefix("unix:path=")))
            .map(|p| p.split(',').next().unwrap_or(p))
            .unwrap_or(SYSTEM_BUS);
        Bus::connect(path)
    }

    /// Connects to the bus listening on the unix socket `path`.
    pub fn connect(path: &str) -> Result<Bus, Error> {
        let io = |what: &str| {
            let what = format!("{what} {path}");
            move |source| Error::Io { what, source }
        };
        let sock = UnixStream::connect(path).map_err(io("connecting to D-Bus at"))?;
        sock.set_read_timeout(Some(REPLY_TIMEOUT))
            .and_then(|_| sock.set_write_timeout(Some(REPLY_TIMEOUT)))
            .map_err(io("setting timeouts on"))?;
        let mut bus = Bus { sock, serial: 0 };
        bus.authenticate().map_err(|e| match e {
            Error::Io { what, source } => Error::Io {
                what: format!("{what} (authenticating to {path})"),
                source,
            },
            e => e,
        })?;
        bus.call(
            Target {
                dest: "org.freedesktop.DBus",
                path: "/org/freedesktop/DBus",
                iface: "org.freedesktop.DBus",
            },
            "Hello",
            &[],
        )?;
        Ok(bus)
    }

    /// SASL `EXTERNAL` with our uid (the bus checks it against the socket's credentials).
    fn authenticate(&mut self) -> Result<(), Error> {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() }.to_string();
        let hex: String = uid.bytes().map(|b| format!("{b:02x}")).collect();
        self.send(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes(), "AUTH")?;
        // The server sends nothing after its one-line answer until we send BEGIN, so reading
        // byte by byte never eats a message.
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            if line.len() > 512 {
                return Err(proto("authentication answer too long"));
            }
            let mut b = [0u8];
            self.recv(&mut b, "the authentication answer")?;
            line.push(b[0]);
        }
        if !line.starts_with(b"OK ") {
            let l = String::from_utf8_lossy(&line);
            return Err(proto(format!(
                "bus refused EXTERNAL authentication: {}",
                l.trim()
            )));
        }
        self.send(b"BEGIN\r\n", "BEGIN")
    }

    fn send(&mut self, b: &[u8], what: &str) -> Result<(), Error> {
        self.sock.write_all(b).map_err(|source| Error::Io {
            what: format!("sending {what} to D-Bus"),
            source,
        })
    }

    fn recv(&mut self, b: &mut [u8], what: &str) -> Result<(), Error> {
        self.sock.read_exact(b).map_err(|source| Error::Io {
            what: format!("waiting for {what} from D-Bus"),
            source,
        })
    }

    fn read_message(&mut self, what: &str) -> Result<Message, Error> {
        let mut fixed = [0u8; 16];
        self.recv(&mut fixed, what)?;
        if fixed[0] != b'l' {
            return Err(proto(
                "big-endian message (only little-endian peers are supported)",
            ));
        }
        let word =
            |i: usize| u32::from_le_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let (body_len, fields_len) = (word(4) as usize, word(12) as usize);
        let head_len = (16 + fields_len).div_ceil(8) * 8;
        if head_len + body_len > MAX_MESSAGE {
            return Err(proto(format!("message of {} bytes", head_len + body_len)));
        }
        let mut head = vec![0u8; head_len];
        head[..16].copy_from_slice(&fixed);
        self.recv(&mut head[16..], what)?;
        let mut body = vec![0u8; body_len];
        self.recv(&mut body, what)?;
        Message::parse(&head, body)
    }

    /// Calls `member` and waits (bounded) for its reply; returns the reply's first value as a
    /// string when it has one (`s`, `o`, or a `v` holding one), else an empty string.
    pub fn call(&mut self, to: Target, member: &str, args: &[Arg]) -> Result<String, Error> {
        self.serial += 1;
        let serial = self.serial;
        self.send(&method_call(serial, to, member, args), member)?;
        let what = format!("the reply to {member}");
        loop {
            // Signals (NameAcquired after Hello) and anything else not ours are skipped.
            let m = self.read_message(&what)?;
            if m.reply_serial != serial || !matches!(m.kind, METHOD_RETURN | ERROR) {
                continue;
            }
            if m.kind == ERROR {
                let message = m.first_string().unwrap_or_default();
                return Err(Error::Method {
                    name: m.error_name,
                    message,
                });
            }
            if m.signature.is_empty() {
                return Ok(String::new());
            }
            return m.first_string();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::{serialized::Context, to_bytes, Value as ZValue, LE};

    fn zbytes<T: serde::Serialize + zbus::zvariant::Type>(v: &T) -> Vec<u8> {
        to_bytes(Context::new_dbus(LE, 0), v).unwrap().to_vec()
    }

    fn body(args: &[Arg]) -> Vec<u8> {
        let mut w = Writer::default();
        args.iter().for_each(|a| a.write(&mut w));
        w.buf
    }

    fn all_kinds() -> Vec<(&'static str, Value)> {
        vec![
            ("Description", Value::from("carve-oci container x.scope")),
            ("Delegate", Value::from(true)),
            ("PIDs", Value::from(vec![4242u32])),
            ("Wants", Value::from(vec!["a.slice".to_string()])),
            ("MemoryMax", Value::from(67_108_864u64)),
            ("AllowedCPUs", Value::from(vec![0x0fu8, 0x01])),
            (
                "DeviceAllow",
                Value::from(vec![("char-*".to_string(), "rwm".to_string())]),
            ),
            (
                "IOReadBandwidthMax",
                Value::from(vec![("/dev/block/8:0".to_string(), 1_000_000u64)]),
            ),
            ("DevicePolicy", Value::from("strict")),
            ("Empty", Value::from(Vec::<(String, String)>::new())),
        ]
    }

    fn as_zvalue(v: &Value) -> ZValue<'static> {
        match v.clone() {
            Value::Bool(b) => ZValue::from(b),
            Value::U64(x) => ZValue::from(x),
            Value::Str(s) => ZValue::from(s),
            Value::U32s(x) => ZValue::from(x),
            Value::Strs(x) => ZValue::from(x),
            Value::Bytes(x) => ZValue::from(x),
            Value::StrPairs(x) => ZValue::from(x),
            Value::StrU64s(x) => ZValue::from(x),
        }
    }

    #[test]
    fn start_transient_unit_body_matches_zvariant() {
        let props = all_kinds();
        let ours = body(&[
            Arg::Str("carve-x.scope"),
            Arg::Str("replace"),
            Arg::Props(&props),
            Arg::NoAux,
        ]);
        let zprops: Vec<(&str, ZValue)> = props.iter().map(|(n, v)| (*n, as_zvalue(v))).collect();
        let aux: Vec<(&str, Vec<(&str, ZValue)>)> = Vec::new();
        let theirs = zbytes(&("carve-x.scope", "replace", zprops, aux));
        assert_eq!(ours, theirs);
    }

    #[test]
    fn set_unit_properties_body_matches_zvariant() {
        let props = vec![
            ("TasksMax", Value::from(32u64)),
            ("CPUWeight", Value::from(39u64)),
        ];
        let ours = body(&[Arg::Str("u.scope"), Arg::Bool(true), Arg::Props(&props)]);
        let zprops: Vec<(&str, ZValue)> = props.iter().map(|(n, v)| (*n, as_zvalue(v))).collect();
        assert_eq!(ours, zbytes(&("u.scope", true, zprops)));
    }

    #[test]
    fn hello_header_as_the_specification_lays_it_out() {
        let to = Target {
            dest: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            iface: "org.freedesktop.DBus",
        };
        let m = method_call(1, to, "Hello", &[]);
        // l, METHOD_CALL, no flags, version 1, body length 0, serial 1.
        assert_eq!(&m[..12], &[b'l', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]);
        // Field 1 (PATH), signature "o", the path's length and text.
        assert_eq!(&m[16..24], &[1, 1, b'o', 0, 21, 0, 0, 0]);
        assert_eq!(&m[24..45], b"/org/freedesktop/DBus");
        assert_eq!(m.len() % 8, 0, "header padded to 8");
        let fields_len = u32::from_le_bytes([m[12], m[13], m[14], m[15]]) as usize;
        assert_eq!((16 + fields_len).div_ceil(8) * 8, m.len());
        // No SIGNATURE field (8) for an empty body; the parser reads it back.
        let parsed = Message::parse(&m, Vec::new()).unwrap();
        assert!(parsed.signature.is_empty());
        assert_eq!(parsed.kind, METHOD_CALL);
    }

    #[test]
    fn replies_parse_their_string_object_and_variant() {
        let to = Target {
            dest: "d.e",
            path: "/p",
            iface: "i.f",
        };
        let m = method_call(7, to, "M", &[Arg::Str("hello")]);
        let fields_len = u32::from_le_bytes([m[12], m[13], m[14], m[15]]) as usize;
        let head = (16 + fields_len).div_ceil(8) * 8;
        let parsed = Message::parse(&m[..head], m[head..].to_vec()).unwrap();
        assert_eq!(parsed.signature, "s");
        assert_eq!(parsed.first_string().unwrap(), "hello");
        let v = Message {
            kind: METHOD_RETURN,
            reply_serial: 1,
            error_name: String::new(),
            signature: "v".into(),
            body: zbytes(&ZValue::from("active")),
        };
        assert_eq!(v.first_string().unwrap(), "active");
        let truncated = Message {
            body: v.body[..6].to_vec(),
            ..v
        };
        assert!(truncated.first_string().is_err());
    }

    /// A private dbus-daemon validates each message it gets and drops a client that sends an
    /// invalid one: our calls (auth, Hello, a StartTransientUnit-shaped body with every value
    /// kind, an error reply) against the real daemon.
    #[test]
    fn talks_to_a_real_dbus_daemon() {
        let d = Daemon::start();
        let mut bus = Bus::connect(&d.path).unwrap();
        let dbus = Target {
            dest: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            iface: "org.freedesktop.DBus",
        };
        let owner = bus
            .call(dbus, "GetNameOwner", &[Arg::Str("org.freedesktop.DBus")])
            .unwrap();
        assert_eq!(owner, "org.freedesktop.DBus");
        let e = bus
            .call(dbus, "GetNameOwner", &[Arg::Str("org.example.CarveNobody")])
            .unwrap_err();
        assert!(e.is("NameHasNoOwner"), "{e}");
        let props = all_kinds();
        let e = bus
            .call(
                dbus,
                "StartTransientUnit",
                &[
                    Arg::Str("carve-x.scope"),
                    Arg::Str("replace"),
                    Arg::Props(&props),
                    Arg::NoAux,
                ],
            )
            .unwrap_err();
        assert!(e.is("UnknownMethod"), "valid message, unknown method: {e}");
        let e = bus
            .call(dbus, "SetUnitProperties", &[Arg::Bool(true)])
            .unwrap_err();
        assert!(e.is("UnknownMethod"), "{e}");
        // Still connected after all that.
        let id = bus.call(dbus, "GetId", &[]).unwrap();
        assert_eq!(id.len(), 32, "{id}");
        // A property read through org.freedesktop.DBus.Properties (a variant reply).
        let e = bus
            .call(
                Target {
                    iface: "org.freedesktop.DBus.Properties",
                    ..dbus
                },
                "Get",
                &[Arg::Str("org.freedesktop.DBus"), Arg::Str("NoSuchProperty")],
            )
            .unwrap_err();
        assert!(matches!(e, Error::Method { .. }), "{e}");
    }

    /// A session-type dbus-daemon on a socket in a temporary directory, killed on drop.
    struct Daemon {
        child: std::process::Child,
        dir: std::path::PathBuf,
        path: String,
    }

    impl Daemon {
        fn start() -> Daemon {
            let dir = std::env::temp_dir().join(format!("carve-dbus-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("bus").to_string_lossy().into_owned();
            let child = std::process::Command::new("dbus-daemon")
                .args([
                    "--session",
                    "--nofork",
                    "--nopidfile",
                    &format!("--address=unix:path={path}"),
                ])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("dbus-daemon (Debian package dbus-daemon, scripts/setup.sh)");
            let d = Daemon { child, dir, path };
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while UnixStream::connect(&d.path).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "dbus-daemon did not listen on {} within 10 s",
                    d.path
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            d
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
