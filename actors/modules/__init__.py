"""Server modules (Pitaya's ``modules`` package): lifecycle, and the built-in modules.

The lifecycle lives in :mod:`actors.modules.base`. The built-in modules are imported from
their own files so an app pays only for what it uses:

* :mod:`actors.modules.binary` -- run a child process with the server;
* :mod:`actors.modules.unique_session` -- one session per uid across frontends;
* :mod:`actors.modules.binding_storage` -- uid -> frontend id in etcd, for direct push/kick.
"""

from actors.modules.base import Module, ModuleBase, Modules, ModuleStartError

__all__ = ["Module", "ModuleBase", "ModuleStartError", "Modules"]
