-- libtorch runs inside this backend; the server was started without LD_LIBRARY_PATH.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS visual_search;
RESET client_min_messages;

-- 3x3 kernel of ones over a 4x4 ramp 0..15: windows sum to 45 + 54 + 81 + 90
SELECT visual_search.torch_smoke();
SELECT visual_search.torch_info();
SET visual_search.threads = 2;
SELECT visual_search.torch_info();
