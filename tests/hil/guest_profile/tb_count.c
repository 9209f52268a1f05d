/* A QEMU TCG plugin that counts the guest instructions executed per translated block and
 * writes "start_pc instructions executions" lines to the file named by its `out=` argument
 * when QEMU exits. `bench_links.py --guest-profile` builds it, runs the Ethernet stream under
 * it and folds the counts onto the firmware's symbols: where the guest's instructions go.
 *
 * Only the handful of plugin API calls it needs are declared here (QEMU 7.2, plugin API
 * version 1), so it builds with a C compiler alone, without QEMU's headers or glib. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t, struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t, qemu_plugin_vcpu_tb_trans_cb_t);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *, enum qemu_plugin_op,
                                              void *, uint64_t);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t, qemu_plugin_udata_cb_t, void *);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
struct qemu_plugin_insn;
typedef uint32_t qemu_plugin_meminfo_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_mem_rw { QEMU_PLUGIN_MEM_R = 1, QEMU_PLUGIN_MEM_W, QEMU_PLUGIN_MEM_RW };
typedef void (*qemu_plugin_vcpu_mem_cb_t)(unsigned int, qemu_plugin_meminfo_t, uint64_t, void *);
struct qemu_plugin_insn *qemu_plugin_tb_get_insn(const struct qemu_plugin_tb *, size_t);
void qemu_plugin_register_vcpu_mem_cb(struct qemu_plugin_insn *, qemu_plugin_vcpu_mem_cb_t,
                                      enum qemu_plugin_cb_flags, enum qemu_plugin_mem_rw, void *);
_Bool qemu_plugin_mem_is_store(qemu_plugin_meminfo_t);
unsigned int qemu_plugin_mem_size_shift(qemu_plugin_meminfo_t);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One entry per (start pc, length): a block translated again (after a flush) keeps counting
 * into the same entry. Open addressing; 64 Ki entries is far more than the firmware's blocks. */
#define SLOTS (1u << 16)
struct entry { uint64_t pc, n, execs; };
static struct entry table[SLOTS];
static char out_path[4096] = "tb_count.txt";
/* With `mmio=on`: every access at or above 0x4000_0000 (peripherals, the system control
 * space) counted per address, direction and size, written as "mmio addr r|w bytes count". */
static int count_mmio;
#define MMIO_SLOTS 4096u
struct access { uint64_t addr; uint32_t kind; uint64_t count; };
static struct access accesses[MMIO_SLOTS];

static void on_access(unsigned int vcpu, qemu_plugin_meminfo_t info, uint64_t vaddr, void *p) {
    (void)vcpu; (void)p;
    if (vaddr < 0x40000000u) return;
    uint32_t kind = (qemu_plugin_mem_is_store(info) ? 0x100u : 0) | (1u << qemu_plugin_mem_size_shift(info));
    uint64_t h = (vaddr * 0x9E3779B97F4A7C15ull) ^ kind;
    for (uint32_t i = 0; i < MMIO_SLOTS; i++) {
        struct access *a = &accesses[(h + i) & (MMIO_SLOTS - 1)];
        if (a->count == 0) { a->addr = vaddr; a->kind = kind; }
        if (a->addr == vaddr && a->kind == kind) { a->count++; return; }
    }
}

static struct entry *lookup(uint64_t pc, uint64_t n) {
    uint64_t h = (pc * 0x9E3779B97F4A7C15ull) ^ n;
    for (uint32_t i = 0; i < SLOTS; i++) {
        struct entry *e = &table[(h + i) & (SLOTS - 1)];
        if (e->n == 0) { e->pc = pc; e->n = n; return e; }
        if (e->pc == pc && e->n == n) return e;
    }
    return NULL;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb) {
    (void)id;
    struct entry *e = lookup(qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb));
    if (e) qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &e->execs, 1);
    if (count_mmio)
        for (size_t i = 0; i < qemu_plugin_tb_n_insns(tb); i++)
            qemu_plugin_register_vcpu_mem_cb(qemu_plugin_tb_get_insn(tb, i), on_access,
                                             QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_MEM_RW, NULL);
}

static void write_counts(qemu_plugin_id_t id, void *p) {
    (void)id; (void)p;
    FILE *f = fopen(out_path, "w");
    if (!f) { perror(out_path); return; }
    for (uint32_t i = 0; i < SLOTS; i++)
        if (table[i].n && table[i].execs)
            fprintf(f, "%llx %llu %llu\n", (unsigned long long)table[i].pc,
                    (unsigned long long)table[i].n, (unsigned long long)table[i].execs);
    for (uint32_t i = 0; i < MMIO_SLOTS; i++)
        if (accesses[i].count)
            fprintf(f, "mmio %llx %c %u %llu\n", (unsigned long long)accesses[i].addr,
                    accesses[i].kind & 0x100u ? 'w' : 'r', accesses[i].kind & 0xFFu,
                    (unsigned long long)accesses[i].count);
    fclose(f);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv) {
    (void)info;
    for (int i = 0; i < argc; i++)
        if (strncmp(argv[i], "out=", 4) == 0) snprintf(out_path, sizeof out_path, "%s", argv[i] + 4);
        else if (strcmp(argv[i], "mmio=on") == 0) count_mmio = 1;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, write_counts, NULL);
    return 0;
}
