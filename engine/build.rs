// Build script: lets napi-build emit the linker flags a Node addon needs (undefined napi_*
// symbols resolved by the host process at load time).
fn main() {
    napi_build::setup();
}
