//! scratch
#[cfg(test)]
mod t {
    use serde::Deserialize;
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Org { #[serde(default)] name: String, domain: String, #[serde(default)] users: Users }
    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Users { #[serde(default)] count: u32 }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "PascalCase")]
    struct Cfg { #[serde(default)] peer_orgs: Vec<Org> }
    #[test]
    fn show() {
        for y in ["PeerOrgs:\n  - Name: a\n    Domain: x\n    Bogus: 1\n",
                  "PeerOrgs:\n  - Name: a\n",
                  "PeerOrgs:\n  - Name: a\n    Domain: x\n    Users:\n      Count: abc\n",
                  "PeerOrgs:\n  - Name: [a\n    Domain: x\n",
                  "PeerOrgs:\n - Name: a\n   Domain: x\n  Foo: 1\n",
                  "",
                  "PeerOrgs:\n  - Name: a\n    Domain:\n"] {
            let opts = serde_saphyr::options! { with_snippet: false };
            let r: Result<Cfg, _> = serde_saphyr::from_str_with_options(y, opts);
            match r { Ok(c) => println!("OK {c:?}"), Err(e) => println!("ERR [{e}] loc={:?}", e.location().map(|l| (l.line(), l.column()))) }
            let r: Result<Cfg, _> = serde_saphyr::from_str(y);
            if let Err(e) = r { println!("SNIP [{e}]"); }
        }
    }
}
