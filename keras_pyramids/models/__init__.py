"""Model factories, one module per family (``ppn``, ``ssd``, ``sppnet``, ``m2det`` ...).

Each module registers its factories with ``@register_model``; importing this
package imports every module in it, so a new family only adds its own file.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
