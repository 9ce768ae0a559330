/* A QEMU TCG plugin that counts the guest instructions a program executes and prints "insns: N" when it exits
   (to QEMU's log: run with -d plugin), the line QEMU's own tests/plugin/insn.c prints. Every translated
   instruction gets an inline add on one counter, as insn.c does with inline=on, so the count costs no callback
   per instruction and equals insn.c's. Arguments (insn.c's "inline=on") are accepted and ignored.

   bifsmn_cli/bench/qemu_plugin.py compiles it against the qemu-plugin.h of the installed QEMU's own source
   (QEMU checks the plugin API version at load); nothing else is needed, not even glib. */
#include <inttypes.h>
#include <stdio.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t executed;

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    const size_t n = qemu_plugin_tb_n_insns(tb);
    for (size_t i = 0; i < n; i++)
        qemu_plugin_register_vcpu_insn_exec_inline(qemu_plugin_tb_get_insn(tb, i), QEMU_PLUGIN_INLINE_ADD_U64,
                                                   &executed, 1);
}

static void report(qemu_plugin_id_t id, void *unused)
{
    (void)id;
    (void)unused;
    char line[64];
    snprintf(line, sizeof line, "insns: %" PRIu64 "\n", executed);
    qemu_plugin_outs(line);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    (void)argc;
    (void)argv;
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, report, NULL);
    return 0;
}
