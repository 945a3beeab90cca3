// Symbol visibility: the library is built with -fvisibility=hidden; public symbols opt in.
#pragma once
#define EPCOMM_EXPORT [[gnu::visibility("default")]]
