from .scan import *  # noqa: F401,F403
from .scan import __all__, to_jsonable  # noqa: F401
