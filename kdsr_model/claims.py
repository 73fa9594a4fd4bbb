"""Claims: several processes, on one machine or on machines sharing a folder, split the inputs
of one output folder without a coordinator.

Before working on an input, a process creates ``.<output stem>.claim`` beside its output
(``O_CREAT | O_EXCL``: only one process gets it), holding JSON with its host, PID, start time
and a random token; it touches the file every :data:`CLAIM_TOUCH_S` seconds while it works and
removes it when done. A claim is abandoned when its process is gone (same host) or when it was
not touched for :data:`~kdsr_model.io.CLAIM_STALE_S` (any host); it is then taken over. Every
takeover or release first renames the claim aside, so only the process whose rename got the
very file it checked removes it.
"""
import datetime
import json
import os
import threading
import time
import uuid

from .io import CLAIM_STALE_S, HOST, _alive

CLAIM_TOUCH_S = 10  # the owner of a claim refreshes its time this often while it holds it


def claim_path(folder, stem):
    """The claim file of the output ``<folder>/<stem>.<ext>``: hidden, beside it; by stem, so that
    it holds whichever extension the decoded image decides."""
    return os.path.join(folder, f'.{stem}.claim')


def _claim_record(path):
    """``(identity, owner)`` of the claim file at ``path``. ``identity`` (inode, mtime in ns,
    content) tells this very file from a later one at the same path; ``owner`` is its JSON as a
    dict, None while its maker is still writing it or if it is not ours."""
    with open(path, 'rb') as f:
        data = f.read()
        st = os.fstat(f.fileno())
    try:
        owner = json.loads(data)
    except ValueError:
        owner = None
    return (st.st_ino, st.st_mtime_ns, data), owner if isinstance(owner, dict) else None


def claim_is_stale(owner, mtime, now=None):
    """Whether a claim is abandoned: its time (``mtime``) was not refreshed for
    :data:`CLAIM_STALE_S` seconds (a live owner touches it every :data:`CLAIM_TOUCH_S`), or, at
    once, its owner was a process of this host that is gone (or had our own PID)."""
    if (time.time() if now is None else now) - mtime > CLAIM_STALE_S:
        return True
    pid = (owner or {}).get('pid')
    if owner and owner.get('host') == HOST and isinstance(pid, int) and pid > 0:
        return pid == os.getpid() or not _alive(pid)
    return False


def _remove_if(path, test):
    """Remove the file at ``path`` if ``test(identity, owner)`` holds for it. It is first renamed
    aside, which is atomic: of processes racing for the same file only one gets it, and one that
    got another file (a claim made meanwhile) puts it back. True if this call removed it."""
    aside = f'{path}.aside-{uuid.uuid4().hex}'
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        ours = test(*_claim_record(aside))
    except OSError:
        ours = False
    if ours:
        os.remove(aside)
        return True
    try:
        os.link(aside, path)  # put back, unless a newer claim is there by now
        os.remove(aside)
    except FileExistsError:
        os.remove(aside)
    except OSError:  # a file system without hard links
        os.replace(aside, path)
    return False


def remove_stale_claims(folder):
    """Delete abandoned claims (:func:`claim_is_stale`) in ``folder``, and leftovers of a
    removal that a killed process left; returns ``(path, owner)`` of each claim removed (owner:
    a dict, empty when the claim was unreadable)."""
    removed = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        try:
            if name.startswith('.') and name.endswith('.claim'):
                identity, owner = _claim_record(path)
                if claim_is_stale(owner, identity[1] / 1e9) and _remove_if(path, lambda i, _: i == identity):
                    removed.append((path, owner or {}))
            elif name.startswith('.') and '.claim.aside-' in name:
                if time.time() - os.path.getmtime(path) > CLAIM_STALE_S:
                    os.remove(path)
        except OSError:  # gone meanwhile, or not ours to read: left alone
            pass
    return removed


def describe_owner(owner):
    """A claim's owner in words: ``PID 123 on host (since 2025-01-01T12:00:00Z)``."""
    if not owner:
        return 'an unknown process (unreadable claim)'
    since = f' (since {owner["started"]})' if owner.get('started') else ''
    return f'PID {owner.get("pid", "?")} on {owner.get("host", "?")}{since}'


class Claims:
    """The outputs this process works on, each marked by a claim file (:func:`claim_path`), so
    that other processes, on this host or on machines sharing the folder, leave it alone.

    A claim is made with ``O_CREAT | O_EXCL`` (of racing processes one only can make it) and
    holds JSON: host, PID, start time and a random token. While held, a thread touches it every
    :data:`CLAIM_TOUCH_S` seconds; an abandoned one (:func:`claim_is_stale`) is taken over.
    :meth:`release` removes a claim only while it is still ours; :meth:`close` releases all.
    """

    def __init__(self):
        self.held = {}  # claim path -> our token
        self._stop = threading.Event()
        self._thread = None

    def take(self, path):
        """Claim ``path`` (its folder is created if needed): ``(True, None)`` when made,
        ``(True, owner)`` when an abandoned claim of ``owner`` was taken over, ``(False, owner)``
        when a live process holds it (``owner`` None if unknown)."""
        previous = None
        for _ in range(5):  # a retry each time the claim went away between two looks
            try:
                if self._create(path):
                    return True, previous
            except FileNotFoundError:  # its folder was just removed, emptied by another process
                continue
            try:
                identity, owner = _claim_record(path)
            except FileNotFoundError:
                continue
            if not claim_is_stale(owner, identity[1] / 1e9):
                return False, owner
            if not _remove_if(path, lambda i, _: i == identity):
                return False, None  # another process was first to take it over
            previous = owner or {}
        return False, None

    def _create(self, path):
        """Make the claim file at ``path``; False if one is there."""
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        token = uuid.uuid4().hex
        started = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')
        try:
            with os.fdopen(fd, 'w') as f:
                json.dump({'host': HOST, 'pid': os.getpid(), 'started': started, 'token': token}, f)
        except BaseException:
            os.remove(path)
            raise
        self.held[path] = token
        if self._thread is None:
            self._thread = threading.Thread(target=self._touch, name='kdsr-claims', daemon=True)
            self._thread.start()
        return True

    def _touch(self):
        while not self._stop.wait(CLAIM_TOUCH_S):
            for path in list(self.held):
                try:
                    os.utime(path)
                except OSError:
                    pass

    def release(self, path):
        """Remove our claim on ``path`` (never a claim another process has made since)."""
        token = self.held.pop(path, None)
        if token is not None:
            try:
                _remove_if(path, lambda _, owner: (owner or {}).get('token') == token)
            except OSError:
                pass  # left behind: abandoned once our process is gone

    def close(self):
        self._stop.set()
        for path in list(self.held):
            self.release(path)
