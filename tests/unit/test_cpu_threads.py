from ivr.nlu.cpu_threads import ThreadPolicy, runnable_threads, threads_for


def test_idle_cores_raise_the_count_up_to_the_cap():
    # runnable counts the caller itself
    assert threads_for(1, 2, cpus=2, runnable=1) == 2
    assert threads_for(1, 4, cpus=8, runnable=1) == 4
    assert threads_for(1, 8, cpus=8, runnable=5) == 4


def test_anything_else_runnable_keeps_the_floor():
    assert threads_for(1, 2, cpus=2, runnable=2) == 1
    assert threads_for(1, 2, cpus=2, runnable=40) == 1
    assert threads_for(2, 4, cpus=2, runnable=9) == 2


def test_unknown_load_or_no_cap_keeps_the_floor():
    assert threads_for(1, 2, cpus=2, runnable=None) == 1
    assert threads_for(2, 2, cpus=16, runnable=1) == 2
    assert threads_for(3, 1, cpus=16, runnable=1) == 3  # a cap below the floor is the floor
    assert threads_for(0, 2, cpus=2, runnable=2) == 1  # never zero


def test_loadavg_parsing(tmp_path):
    f = tmp_path / "loadavg"
    f.write_text("1.00 0.97 0.97 3/95 18216\n")
    assert runnable_threads(str(f)) == 3
    f.write_text("garbage")
    assert runnable_threads(str(f)) is None
    assert runnable_threads(str(tmp_path / "missing")) is None


def test_policy_probes_only_when_it_could_change_something():
    calls = []

    def probe():
        calls.append(1)
        return 1

    fixed = ThreadPolicy(1, 1, cpus=2, probe=probe)
    assert fixed.threads() == 1 and not calls and not fixed.adaptive
    adaptive = ThreadPolicy(1, 2, cpus=2, probe=probe)
    assert adaptive.threads() == 2 and calls == [1]
    assert ThreadPolicy(2, 1).most == 2  # normalised: the cap is at least the floor


def test_the_real_probe_reads_this_machine():
    n = runnable_threads()
    assert n is None or n >= 1  # this test's own thread is running
