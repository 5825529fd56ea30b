use flexsc_kmod::{Config, Syscall, register};

#[test]
fn getppid_through_threads() {
    let reg = register(Config { syscall_cores: vec![1], ..Config::default() }).unwrap();
    let mut p = reg.poster(0).unwrap();
    let want = unsafe { libc::getppid() } as i64;
    for _ in 0..1000 {
        assert_eq!(p.call(&Syscall::new(libc::SYS_getppid, &[])), want);
    }
    let mut ts = Vec::new();
    for _ in 0..100 {
        ts.push(p.post(&Syscall::new(libc::SYS_getppid, &[])).unwrap());
    }
    for t in ts {
        assert_eq!(p.take(t), want);
    }
    assert_eq!(p.call(&Syscall::new(5000, &[])), -(libc::ENOSYS as i64));
}
