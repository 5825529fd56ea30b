// SPDX-License-Identifier: GPL-2.0
/*
 * device.c - /dev/flexsc: exception-less system calls (FlexSC, Soares & Stumm, OSDI'10) for
 * processes that register syscall pages with it. The ioctls are described in flexsc_ioctl.h,
 * the whole design in docs/kernel-module.md.
 */
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "flexsc_mod.h"

static int flexsc_open(struct inode *inode, struct file *file)
{
	struct flexsc_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	mutex_init(&f->mutex);
	file->private_data = f;
	return 0;
}

static int flexsc_release(struct inode *inode, struct file *file)
{
	struct flexsc_file *f = file->private_data;

	if (f->reg) {
		flexsc_unregister(f->reg);
		flexsc_reg_destroy(f->reg);
	}
	mutex_destroy(&f->mutex);
	kfree(f);
	return 0;
}

static long flexsc_do_register(struct flexsc_file *f, void __user *uarg)
{
	struct flexsc_register_args args;
	struct flexsc_reg *reg;
	long ret = 0;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	mutex_lock(&f->mutex);
	if (f->reg) {
		ret = -EBUSY;
		goto out;
	}
	reg = flexsc_reg_create(&args);
	if (IS_ERR(reg)) {
		ret = PTR_ERR(reg);
		goto out;
	}
	/* Published complete: pairs with the smp_load_acquire in flexsc_ioctl. */
	smp_store_release(&f->reg, reg);
out:
	mutex_unlock(&f->mutex);
	return ret;
}

static long flexsc_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct flexsc_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct flexsc_worker_args wa;
	struct flexsc_wait_args wait;
	struct flexsc_slot_args slot;
	struct flexsc_reg *reg;
	long ret;

	/* A call run from an entry must not come back in here (nesting, or a thread waiting on
	 * itself).
	 */
	if (flexsc_current_is_worker())
		return -EDEADLK;
	/* Calls run through the module bypass seccomp: a filtered process may not use it. */
	if (flexsc_seccomp_active())
		return -EPERM;
	if (cmd == FLEXSC_IOC_REGISTER)
		return flexsc_do_register(f, uarg);
	/* Pairs with the smp_store_release in flexsc_do_register. */
	reg = smp_load_acquire(&f->reg);
	if (!reg)
		return -ENXIO;
	if (!flexsc_reg_owned_by_current(reg))
		return -EPERM;

	switch (cmd) {
	case FLEXSC_IOC_WORKER:
		if (copy_from_user(&wa, uarg, sizeof(wa)))
			return -EFAULT;
		if (wa.flags)
			return -EINVAL;
		return flexsc_worker(reg, wa.syscall_core);
	case FLEXSC_IOC_WAIT:
		if (copy_from_user(&wait, uarg, sizeof(wait)))
			return -EFAULT;
		ret = flexsc_wait(reg, &wait);
		if (ret != -EINVAL && copy_to_user(uarg, &wait, sizeof(wait)))
			return -EFAULT;
		return ret;
	case FLEXSC_IOC_UNREGISTER:
		flexsc_unregister(reg);
		return 0;
	case FLEXSC_IOC_KICK:
		flexsc_kick(reg);
		return 0;
	case FLEXSC_IOC_WAKE:
		if (arg >= reg->cores)
			return -EINVAL;
		flexsc_wake_core(reg, arg);
		return 0;
	case FLEXSC_IOC_INTERRUPT:
		if (copy_from_user(&slot, uarg, sizeof(slot)))
			return -EFAULT;
		return flexsc_interrupt(reg, slot.core, slot.slot);
	}
	return -ENOTTY;
}

static const struct file_operations flexsc_fops = {
	.owner = THIS_MODULE,
	.open = flexsc_open,
	.release = flexsc_release,
	.unlocked_ioctl = flexsc_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice flexsc_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = FLEXSC_DEVICE_NAME,
	.fops = &flexsc_fops,
	.mode = 0600, /* root only by default: see docs/kernel-module.md */
};

static int __init flexsc_init(void)
{
	int err = flexsc_dispatch_init();

	if (err)
		return err;
	err = misc_register(&flexsc_misc);
	if (err)
		return err;
	pr_info("flexsc: /dev/%s ready\n", FLEXSC_DEVICE_NAME);
	return 0;
}

static void __exit flexsc_exit(void)
{
	misc_deregister(&flexsc_misc);
}

module_init(flexsc_init);
module_exit(flexsc_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("FlexSC exception-less system calls, run by in-kernel syscall threads");
MODULE_AUTHOR("libflexsc");
