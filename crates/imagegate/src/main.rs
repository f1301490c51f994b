// jemalloc rather than glibc's malloc: freed memory goes back to the system after a load, and
// less of it is held per waiting request (bench/RESULTS.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    imagegate::cli::main()
}
