//! A hostile adapter. Its `mode` setting picks the attack:
//! - `spin`: loops forever (the CPU budget must stop it);
//! - `membomb`: allocates until memory runs out (the memory cap must stop it);
//! - `panic`: panics, which traps (the message goes to stderr);
//! - `bigout`: returns an 8 MiB body (the output cap must refuse it);
//! - `escape`: tries to read a file, the environment and the network, and reports what it
//!   got as the body (all of it must fail or be empty);
//! - `keyhunt`: hunts for the subscription's signing key. It signs chosen messages through
//!   the HMAC import, looks at its settings, environment, arguments and files, logs what
//!   it found, and then sends its whole linear memory as the body, followed by a JSON
//!   report. The key must appear nowhere: the adapter only ever sees MACs.
//! - `hmacflood`: calls the HMAC import more often than one call may (the engine refuses);
//! - anything else: delivers `{"ok": true}`.

use wasmhook_adapter::signing::{hex, hmac_sha256};
use wasmhook_adapter::{Action, Adapter, Context, Error, Event, Request, log};

wasmhook_adapter::settings! {
    /// The one knob.
    pub struct HostileSettings {
        /// Which attack.
        mode: Option<String>,
    }
}

struct Hostile;

fn deliver(body: Vec<u8>) -> Result<Action, Error> {
    Ok(Action::deliver(Request::post("application/json", body)))
}

impl Adapter for Hostile {
    type Settings = HostileSettings;

    fn transform(
        _event: Event,
        settings: HostileSettings,
        context: Context,
    ) -> Result<Action, Error> {
        match settings.mode.as_deref().unwrap_or("") {
            "spin" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "membomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "panic" => panic!("hostile guest panicked on purpose"),
            "bigout" => deliver(vec![b'x'; 8 << 20]),
            "escape" => {
                let file = std::fs::read_to_string("/etc/passwd").map(|s| s.len());
                let cwd = std::fs::read_dir(".").map(|d| d.count());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let net = std::net::TcpStream::connect("127.0.0.1:1");
                let body = format!(
                    "{{\"file\":{:?},\"dir\":{:?},\"env\":{},\"net\":{:?}}}",
                    format!("{file:?}"),
                    format!("{cwd:?}"),
                    env.len(),
                    format!("{:?}", net.map(|_| "connected")),
                );
                deliver(body.into_bytes())
            }
            "keyhunt" => keyhunt(&context),
            "hmacflood" => {
                for _ in 0..1000 {
                    std::hint::black_box(hmac_sha256(b"again"));
                }
                deliver(b"{\"flooded\":true}".to_vec())
            }
            _ => deliver(b"{\"ok\":true}".to_vec()),
        }
    }
}

/// Everything an adapter could try to learn the key with, then its own memory.
fn keyhunt(context: &Context) -> Result<Action, Error> {
    let probes: [&[u8]; 4] = [b"", b"whsec_", b"key", &[0u8; 64]];
    let macs: Vec<Vec<String>> = probes
        .iter()
        .map(|m| hmac_sha256(m).iter().map(|mac| hex(mac)).collect())
        .collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let args: Vec<String> = std::env::args().collect();
    let root = std::fs::read_dir("/")
        .map(|d| d.count())
        .map_err(|e| e.to_string());
    let report = serde_json::json!({
        "macs": macs,
        "settings": context.settings,
        "env": env,
        "args": args,
        "root": format!("{root:?}"),
    });
    log::warn(&format!("keyhunt found: {report}"));
    let mut body = memory_dump();
    body.extend_from_slice(b"\n--report--\n");
    body.extend_from_slice(report.to_string().as_bytes());
    Ok(Action::deliver(Request::post(
        "application/octet-stream",
        body,
    )))
}

/// A copy of this instance's whole linear memory (but its first bytes, at address 0).
fn memory_dump() -> Vec<u8> {
    #[cfg(target_arch = "wasm32")]
    {
        let len = core::arch::wasm32::memory_size(0) * 65536;
        let mut dump = Vec::with_capacity(len);
        for addr in 8..len {
            // SAFETY: every address below `memory_size` is mapped linear memory; a byte
            // read there is defined for wasm, whatever Rust object (if any) lives there.
            dump.push(unsafe { core::ptr::read_volatile(addr as *const u8) });
        }
        dump
    }
    #[cfg(not(target_arch = "wasm32"))]
    Vec::new()
}

wasmhook_adapter::export_adapter!(Hostile);
