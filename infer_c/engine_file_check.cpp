// engine_file_check: the C++ engine-file reader and JSON parser, without CUDA (tests/test_build_cuda_cpu.py).
//
//   engine_file_check FILE [BACKEND]   verify FILE as the runtime does (BACKEND "" accepts any) and print
//                                      "ok backend=... precision=... layers=... profiles=..." then one line
//                                      per tensor: "tensor NAME DTYPE d0xd1 CRC32"; or "error: ..." (status 2)
//   engine_file_check --json TEXT      parse TEXT; print "ok" or "error: ..." (status 2)
//   engine_file_check --arch FILE SM   check FILE was built for sm SM
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "engine_file.h"
#include "json.h"

int main(int argc, char** argv) {
    try {
        if (argc >= 3 && std::string(argv[1]) == "--json") {
            bertqa::json::parse(argv[2]);
            std::printf("ok\n");
            return 0;
        }
        if (argc >= 4 && std::string(argv[1]) == "--arch") {
            const bertqa::EngineFile e = bertqa::read_engine_file(argv[2], "");
            bertqa::check_engine_arch(e, std::atoi(argv[3]), "this GPU");
            std::printf("ok\n");
            return 0;
        }
        if (argc < 2) {
            std::fprintf(stderr, "usage: engine_file_check FILE [BACKEND] | --json TEXT | --arch FILE SM\n");
            return 2;
        }
        const std::string backend = argc >= 3 ? argv[2] : "cuda";
        const bertqa::EngineFile e = bertqa::read_engine_file(argv[1], backend);
        std::printf("ok backend=%s precision=%s layers=%d hidden=%d ops=%zu profiles=%s vocab=%zu lower=%d "
                    "mode=%s capacity=%d\n",
                    e.backend.c_str(), e.precision.c_str(), e.config.num_layers, e.config.hidden_size, e.ops.size(),
                    e.profiles_text().c_str(), e.vocab_entries, int(e.do_lower_case), e.sequence_mode.c_str(),
                    e.token_capacity);
        for (const auto& t : e.tensors) {
            std::string shape;
            for (size_t i = 0; i < t.shape.size(); ++i) shape += (i ? "x" : "") + std::to_string(t.shape[i]);
            std::printf("tensor %s %s %s %u\n", t.name.c_str(), bertqa::dtype_name(t.dtype),
                        shape.empty() ? "scalar" : shape.c_str(),
                        bertqa::crc32(e.data.data() + t.offset, t.nbytes));
        }
        return 0;
    } catch (const bertqa::UserError& ex) {
        std::printf("error: %s\n", ex.what());
        return 2;
    } catch (const std::exception& ex) {
        std::printf("error: %s\n", ex.what());
        return 2;
    }
}
