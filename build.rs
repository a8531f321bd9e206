//! Configure-less: the platform facts autotools would probe are known from the target, so they
//! become cfgs here once and the code asks for the fact, not for a list of operating systems.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(zkit_o_tmpfile)");
    println!("cargo::rustc-check-cfg=cfg(zkit_xattr)");
    println!("cargo::rustc-check-cfg=cfg(zkit_iflags, values(\"ioctl\", \"chflags\"))");
    println!("cargo::rustc-check-cfg=cfg(zkit_fuse)");
    println!("cargo::rerun-if-changed=build.rs");

    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // FUSE views (zmount): Linux always; macOS with the `macfuse` feature (needs its SDK).
    if os == "linux" || (os == "macos" && std::env::var_os("CARGO_FEATURE_MACFUSE").is_some()) {
        println!("cargo::rustc-cfg=zkit_fuse");
    }
    if matches!(os.as_str(), "linux" | "android" | "macos" | "ios") {
        // getxattr(2) family with user-visible names (FreeBSD has extattr(2) instead).
        println!("cargo::rustc-cfg=zkit_xattr");
    }
    match os.as_str() {
        "linux" | "android" => {
            // O_TMPFILE (Linux 3.11) and FS_IOC_GETFLAGS/SETFLAGS inode flags.
            println!("cargo::rustc-cfg=zkit_o_tmpfile");
            println!("cargo::rustc-cfg=zkit_iflags=\"ioctl\"");
        }
        "macos" | "ios" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" => {
            // st_flags and chflags(2): UF_/SF_IMMUTABLE and UF_/SF_APPEND.
            println!("cargo::rustc-cfg=zkit_iflags=\"chflags\"");
        }
        _ => {}
    }
}
