//! Any bytes as the config file (`store::config::load` takes a path: the bytes are written to
//! a file in a private folder on tmpfs first).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;

fn path() -> &'static PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let dir = PathBuf::from(format!(
            "/dev/shm/tailchat-fuzz-config-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("config.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let p = path();
    std::fs::write(p, data).unwrap();
    if let Ok(Some(c)) = tailchat::store::config::load(p) {
        let _ = c.history_limit.map(|h| h.limit());
        for p in c.peers.unwrap_or_default() {
            let _ = tailchat::net::addr::parse(&p, 7654);
        }
        let allow: Vec<_> = c
            .allow
            .unwrap_or_default()
            .iter()
            .filter_map(|e| tailchat::app::allow::parse_entry(e).ok())
            .collect();
        let list = tailchat::app::allow::AllowList::new(allow);
        let _ = list.admits_address([100, 64, 0, 7].into());
        let _ = list.admits_address(std::net::Ipv6Addr::LOCALHOST.into());
    }
});
